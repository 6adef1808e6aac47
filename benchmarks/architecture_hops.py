"""Follow one ``tz.kv.answer`` call to the attention kernel (issue 25's "done when"): the tokenzip frames on the stack
when SDPA first runs, the tokenzip calls inside that first attention call before SDPA, and every tokenzip file whose
code runs during the call. On a tiny seeded Llama, one thread:

    python benchmarks/architecture_hops.py [KV_METHOD]     # default snapkv
"""
import sys
import warnings

import torch
import transformers.integrations.sdpa_attention as sdpa_mod

import tokenzip as tz
import tokenzip.models.attachment as att
from tokenzip.testing import tiny_model

torch.set_num_threads(1)
warnings.simplefilter("ignore")
root = tz.__file__.rsplit("/", 1)[0] + "/"
model, tok = tiny_model("llama")
stacks = []
original = sdpa_mod.sdpa_attention_forward


def spy(*a, **k):
    if not stacks:
        f = sys._getframe(1)
        frames = []
        while f is not None:
            frames.append((f.f_code.co_filename, f.f_code.co_name))
            f = f.f_back
        stacks.append(frames[::-1])
    return original(*a, **k)


att.sdpa_attention_forward = spy
files_run = set()


in_attention = []


def tracer(frame, event, arg):
    if event == "call" and frame.f_code.co_filename.startswith(root):
        name = frame.f_code.co_filename[len(root):]
        files_run.add(name)
        if not stacks and (in_attention or frame.f_code.co_name == "_attention"):
            in_attention.append((name, frame.f_code.co_qualname))
    return None


text = "The special magic number is 482913. The cat jumps over the lazy dog. " * 4
method = tz.get_method(sys.argv[1] if len(sys.argv) > 1 else "snapkv", ratio=0.5)
sys.setprofile(tracer)
tz.kv.answer(model, tok, text, "What is the number?", method, max_new_tokens=2)
sys.setprofile(None)
stack = stacks[0]
start = next(i for i, (f, n) in enumerate(stack) if f.endswith("kv/answer.py") and n == "answer")
ours = [(f[len(root):], n) for f, n in stack[start:] if f.startswith(root)]
print("tokenzip frames from tz.kv.answer to SDPA:", len(ours), "; all frames:", len(stack) - start)
for f, n in ours:
    print("   ", f, n)
print("tokenzip files on that stack:", len({f for f, _ in ours}))
print("tokenzip files whose code ran during the call:", len(files_run))
print("   ", sorted(files_run))
print("tokenzip calls inside the first attention call, before SDPA:", len(in_attention))
for f, n in in_attention:
    print("   ", f, n)
