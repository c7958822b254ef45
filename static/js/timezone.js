// Times on the pages are shown in the browser's own time zone: the server reads it from this cookie
// (lumbar_platform.middleware.TimeZoneMiddleware) from the next page on; every page names the zone it used.
(function () {
  "use strict";
  let zone = "";
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch (error) {
    return;
  }
  if (!zone) return;
  const cookie = "tz=" + encodeURIComponent(zone);
  if (document.cookie.split("; ").indexOf(cookie) === -1) {
    document.cookie = cookie + "; path=/; max-age=31536000; SameSite=Lax";
  }
})();
