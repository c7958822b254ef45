from __future__ import annotations

import hashlib
from functools import cached_property

from django.core.cache import cache
from django.core.paginator import Paginator
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request


class CachedCountPaginator(Paginator):
    """The page's `count` stays exact, but a large one is kept for a few seconds per list and user.

    At hospital size the COUNT dominates a list request: a clinician's predictions are counted through
    scan and case to apply their scope (about 40,000 rows joined on every request, where the page itself
    comes from an index in a few milliseconds). There is no narrower exact count without copying the
    case's owner onto every prediction, so a count of at least LARGE_COUNT rows is cached for
    COUNT_SECONDS under `count_key` (Pagination's: the user, the route and every filter): a client paging
    through, or many asking at once, counts once. A new row then shows in `count` (and `next`) up to
    COUNT_SECONDS late. Smaller counts are cheap and never cached, so they are always exact.
    """

    LARGE_COUNT = 1000
    COUNT_SECONDS = 10

    def __init__(self, object_list, per_page, *, count_key: str, **kwargs) -> None:
        super().__init__(object_list, per_page, **kwargs)
        self.count_key = count_key

    @cached_property
    def count(self) -> int:
        count = cache.get(self.count_key)
        if count is None:
            count = super().count
            if count >= self.LARGE_COUNT:
                cache.set(self.count_key, count, self.COUNT_SECONDS)
        return count


class Pagination(PageNumberPagination):
    page_size = 25
    page_size_query_param = "page_size"
    max_page_size = 100

    def django_paginator_class(self, object_list, per_page: int) -> CachedCountPaginator:
        # DRF's paginate_queryset keeps the request, then builds its paginator as
        # `self.django_paginator_class(queryset, page_size)`.
        return CachedCountPaginator(object_list, per_page, count_key=self._count_key(self.request))

    def _count_key(self, request: Request) -> str:
        """What decides the rows a list counts: the user (their scope), the route and every query parameter
        but the page and its size (filters, search; an ordering does not change the count but costs
        nothing to keep). Built from the request rather than from the query's SQL, which took a tenth of
        a prediction list's time to compile for the key alone."""
        paging = {self.page_query_param, self.page_size_query_param}
        params = sorted(
            (k, v) for k, values in request.query_params.lists() if k not in paging for v in values
        )
        scope = repr((request.user.pk, request.path, params))
        return "api-count:" + hashlib.sha256(scope.encode()).hexdigest()
