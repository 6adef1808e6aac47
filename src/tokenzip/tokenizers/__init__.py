"""Tokenizer stage: audit tokenizers and train ones that need fewer tokens.

    import tokenzip as tz
    par = tz.tokenizers.from_catalogs(count=40)               # offline parallel text (gettext catalogs)
    result = tz.tokenizers.audit(["gemma-3-270m", "minilm-l6"], parallel=par)
    result.premium_table()                                     # token premium per language vs English
    corpus = tz.tokenizers.default_corpus()                    # docstrings of installed packages
    trained = tz.tokenizers.train_tokenizer(corpus.train, "superbpe", 32000)
    trained.tokenizer.save("tokenizer.json")                   # a stock tokenizers.Tokenizer

Importing this package is light: ``tokenizers`` itself loads on first use.
"""

from tokenzip.tokenizers.audit import AuditResult, audit
from tokenzip.tokenizers.corpus import Corpus, corpus_from_files, default_corpus
from tokenzip.tokenizers.load import LoadedTokenizer, load_tokenizer
from tokenzip.tokenizers.parallel import ParallelText, from_catalogs, from_files
from tokenzip.tokenizers.train import Trained, evaluate, train_tokenizer

__all__ = [
    "AuditResult",
    "Corpus",
    "LoadedTokenizer",
    "ParallelText",
    "Trained",
    "audit",
    "corpus_from_files",
    "default_corpus",
    "evaluate",
    "from_catalogs",
    "from_files",
    "load_tokenizer",
    "train_tokenizer",
]
