"""Analysis of crowd answers: quality control, aggregation, reports, counterfactual tests."""
