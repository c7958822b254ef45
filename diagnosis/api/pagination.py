from __future__ import annotations

import hashlib
from functools import cached_property

from django.core.cache import cache
from django.core.paginator import Paginator
from rest_framework.pagination import PageNumberPagination


class CachedCountPaginator(Paginator):
    """The page's `count` stays exact, but a large one is kept for a few seconds per query.

    At hospital size the COUNT dominates a list request: a clinician's predictions are counted through
    scan and case to apply their scope (about 40,000 rows joined on every request, where the page itself
    comes from an index in a few milliseconds). There is no narrower exact count without copying the
    case's owner onto every prediction, so a count of at least LARGE_COUNT rows is cached for
    COUNT_SECONDS under the exact SQL counted (the user's scope and every filter are in it): a client
    paging through, or many asking at once, counts once. A new row then shows in `count` (and `next`)
    up to COUNT_SECONDS late. Smaller counts are cheap and never cached, so they are always exact.
    """

    LARGE_COUNT = 1000
    COUNT_SECONDS = 10

    @cached_property
    def count(self) -> int:
        query = getattr(self.object_list, "query", None)
        if query is None:
            return super().count
        sql, params = query.sql_with_params()
        key = "api-count:" + hashlib.sha256(repr((sql, params)).encode()).hexdigest()
        count = cache.get(key)
        if count is None:
            count = super().count
            if count >= self.LARGE_COUNT:
                cache.set(key, count, self.COUNT_SECONDS)
        return count


class Pagination(PageNumberPagination):
    page_size = 25
    page_size_query_param = "page_size"
    max_page_size = 100
    django_paginator_class = CachedCountPaginator
