"""Finding analyses: the job query's filters, for the analyses' own columns."""

from ..querysets import JobQuerySet


class AnalysisQuerySet(JobQuerySet):
    """JobQuerySet's scopes, filters and keyset pages, on analyses (names are matched without the
    jobs' name index)."""

    def within(self, name_contains="", **scope):
        analyses = self.filter(**scope)
        return analyses.filter(name__icontains=name_contains) if name_contains else analyses
