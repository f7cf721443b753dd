"""Asynchronous cases: the intake questionnaire, the case's life (new, in review, answered, closed), the answer."""
