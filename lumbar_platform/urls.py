from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, register_converter

from diagnosis.api.filters import IdConverter
from lumbar_platform import views

register_converter(IdConverter, "id")
handler500 = "lumbar_platform.views.server_error"

urlpatterns = [
    path("admin/", admin.site.urls),
    # Pages name their icon; browsers and tools that ask for /favicon.ico anyway are sent to it.
    path("favicon.ico", views.favicon),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("accounts/password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("api/", include("diagnosis.api.urls")),
    path("", include("diagnosis.urls")),
]
