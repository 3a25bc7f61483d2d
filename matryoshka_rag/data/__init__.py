"""Public datasets and texts: BEIR files (`beir`), fetching a named dataset once (`download`, `zip_extract`),
and pseudo-queries drawn from a corpus (`pseudo_queries`)."""
