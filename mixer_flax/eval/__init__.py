"""Evaluators run on the parameters during and after training: classification, few-shot."""
