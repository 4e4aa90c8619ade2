"""Integrations with other libraries, each an optional extra: ``ggrun.integrations.langchain``
(``pip install ggrun[langchain]``)."""
