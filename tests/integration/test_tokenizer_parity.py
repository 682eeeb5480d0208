#!/usr/bin/python3
"""Parity of `triagectl tokenize` (the C++ Qwen2 byte-level BPE tokenizer) with the reference
implementation npm @huggingface/tokenizers (tests/js/tokenize.js) on the real Qwen2.5 tokenizer.json
and on a copy extended with the UniBiomed added tokens (InternVL2.5's nine, then Sa2VA's five, ids
after the last existing one, as in the released checkpoint). The strings: UniBiomed prompts, numbers,
whitespace, contractions, accents, scripts, emoji, Unicode edge cases, and 400 seeded random ones.
Every string is compared: ids, the decoded text of those ids, and the round trip
decode(encode(s)) == NFC(s); all mismatches are printed, any one fails the test."""
import json
import pathlib
import random
import shutil
import subprocess
import sys
import tempfile
import time
import unicodedata
import unittest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from harness import ROOT, SHARED, TRIAGECTL  # noqa: E402

QWEN = SHARED / "data" / "tokenizers" / "qwen2.5"
TOKENIZE_JS = ROOT / "tests" / "js" / "tokenize.js"
UNIBIOMED_TOKENS = ["<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>",
                    "[SEG]", "<p>", "</p>", "<vp>", "</vp>"]

PROMPT = ("<|user|>\n<img><IMG_CONTEXT><IMG_CONTEXT></img>\nCan you identify any abnormality within this CT image? "
          "Please respond with segmentation masks.<|end|>\n<|assistant|>\n")
STRINGS = [
    PROMPT,
    "Please segment liver tumor in the CT image.",
    "What is the <region> in the picture?",
    "It is [SEG]. liver tumor.",
    "[SEG]. pneumothorax.",
    "<p>liver</p> [SEG], <p> kidney tumor </p>[SEG]<vp><box></box></vp><ref>x</ref><quad></quad>",
    "<img></img><IMG_CONTEXT>" * 3 + "\n",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|endoftext|>",
    "<|im_start|><|im_end|><|vision_start|><|image_pad|><|vision_end|><|fim_prefix|>",
    "2026-11-29 12:34:56", "3.14159", "1234567", "-0.5e-10 +42 1,000,000 $3.50 50% 1/2",
    "a  b\n\n\nc\t\td   ", "   leading", "trailing   ", "\n", "\r\n\r\n", " \n \n ", "x \t\n y", "\t\t", "a\u00a0b\u3000c",
    "don't it's we'll I'M", "'s 'S 'RE 'Ve 'LL 'D 'M 't' ''s", "you've they'd she'll o'clock rock'n'roll",
    "naïve café, Zürich", "e\u0301", "Ångström A\u030angstro\u0308m", "Straße İstanbul ĳ ǅ",
    "肝肿瘤 肺结节", "日本語のテキスト、句読点。", "한국어 간암 \u1100\u1161\u11a8", "ไทย ภาษา", "हिन्दी भाषा", "العربية والعبرية עברית",
    "🫁🧠 ok", "👩\u200d⚕️ 🇫🇷 👍🏽 1️⃣", "µm 37°C ±5", "Ⅻ ² ½ ０１２ ٣٤", "x²+y²=z² → ∞ ≤ ≥ ≠",
    "!!!\n\n???", "...\n", "(a) [b] {c} <d>", "#include <vector>\nint main() { return 0; }\n",
    "https://example.org/path?q=1&r=2#frag", "C:\\Users\\x", "\"quoted\" «guillemets» „Anführung“",
    "CT: 3.5 x 2.1 cm hypodense lesion in segment VII (HU 45).", "T2-FLAIR hyperintensity, 12mm, L>R.",
    "A" * 200, "ab" * 150, " " * 40, "\u00e9" * 50,
    # Unicode edges: NEL, BOM, line/paragraph separators, VT/FF, controls, zero-width, stacked and
    # leading combining marks, astral and private-use code points.
    "\u0085x", "\ufeffx", "a\u2028b\u2029", "x\u000b\u000cy", "\x01\x7f", "\u200b\u200d", "A\u0300\u0316",
    "\u0301abc", "\U00010000 \U0010FFFD", "e\u0301\u0301",
]

# Random strings (fixed seed) over pieces where tokenizers are easy to get wrong: contractions,
# whitespace kinds, combining marks, scripts, digits of other systems, emoji, added tokens.
PIECES = list("aAzZ ' \n\r\t.,!?-_0123456789") + [
    "'s", "'T", "'re", "'LL", "'d", "'ve", "'m", "  ", "\n\n", "\r\n", "é", "e\u0301", "ß", "中", "文", "한",
    "\u1100\u1161", "🫁", "👩\u200d⚕️", "\u00a0", "\u3000", "\u2028", "\u0085", "\ufeff", "µ", "²", "½", "Ⅻ", "٣",
    "\u0301", "\u200b", "<img>", "[SEG]", "<|im_end|>", "<|user|>", "<p>", "</p>", "<IMG_CONTEXT>", "<", "|", ">",
    "[", "]", "$", "€", "«", "…", "—", "ǅ", "İ", "ſ", "\x01", "\x7f", "\U0001F600", "\U00010437", "ا", "ं", "ก", "ั"]
_rng = random.Random(14)
STRINGS += ["".join(_rng.choice(PIECES) for _ in range(_rng.randint(1, 25))) for _ in range(400)]


def unibiomed_tokenizer(src, dst):
    """Writes src's tokenizer.json with the UniBiomed added tokens appended (ids after the last)."""
    t = json.loads(src.read_text(encoding="utf-8"))
    next_id = max(max(t["model"]["vocab"].values()), max(a["id"] for a in t["added_tokens"])) + 1
    have = {a["content"] for a in t["added_tokens"]}
    for content in UNIBIOMED_TOKENS:
        if content not in have:
            t["added_tokens"].append({"id": next_id, "content": content, "single_word": False, "lstrip": False,
                                      "rstrip": False, "normalized": False, "special": True})
            next_id += 1
    dst.write_text(json.dumps(t, ensure_ascii=False), encoding="utf-8")


def reference(tokenizer_json, strings):
    r = subprocess.run(["node", str(TOKENIZE_JS), str(tokenizer_json), str(QWEN / "internvl2.5-1b.tokenizer_config.json")],
                       input=json.dumps(strings), capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise AssertionError(f"reference tokenizer failed (scripts/install-deps.sh installs it): {r.stderr[-1500:]}")
    return json.loads(r.stdout)


def triagectl(*args):
    """triagectl tokenize ARGS: (exit code, stdout, stderr)."""
    r = subprocess.run([str(TRIAGECTL), "tokenize", *args], capture_output=True, timeout=300)
    return r.returncode, r.stdout.decode("utf-8"), r.stderr.decode("utf-8", "replace")


class TokenizerParity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = pathlib.Path(tempfile.mkdtemp(prefix="tok-parity-"))
        cls.plain = cls.tmp / "plain"  # model.json names the file
        cls.plain.mkdir()
        shutil.copy(QWEN / "tokenizer.json", cls.plain / "qwen.json")
        (cls.plain / "model.json").write_text(json.dumps({"name": "parity", "tokenizer": "qwen.json"}))
        cls.extended = cls.tmp / "extended"  # no model.json: DIR/tokenizer.json
        cls.extended.mkdir()
        unibiomed_tokenizer(QWEN / "tokenizer.json", cls.extended / "tokenizer.json")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def decode(self, bundle, ids):
        rc, out, err = triagectl("--bundle", str(bundle), "--decode", json.dumps(ids))
        self.assertEqual(rc, 0, err)
        return out[:-1] if out.endswith("\n") else out

    def compare(self, bundle, tokenizer_json):
        expected = reference(tokenizer_json, STRINGS)
        mismatches, all_ids = [], []
        # Every string in one call (one JSON array a line), and the UniBiomed prompts one call each.
        rc, out, err = triagectl("--bundle", str(bundle), "--", *STRINGS)
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        self.assertEqual(len(lines), len(STRINGS))
        for s, ref, line in zip(STRINGS, expected, lines):
            if json.loads(line) != ref["ids"]:
                mismatches.append(f"{s!r}:\n    C++ {line}\n    ref {ref['ids']}")
            all_ids += ref["ids"]
        for s, ref in list(zip(STRINGS, expected))[:5]:
            rc, out, err = triagectl("--bundle", str(bundle), "--", s)
            if rc != 0 or json.loads(out) != ref["ids"]:
                mismatches.append(f"{s!r} alone: exit {rc} {err.strip()} {out.strip()}")
        # Decoding is per token, so one call decodes every string's ids at once; per string on a miss.
        want = "".join(unicodedata.normalize("NFC", s) for s in STRINGS)
        if self.decode(bundle, all_ids) != want or "".join(r["decoded"] for r in expected) != want:
            for s, ref in zip(STRINGS, expected):
                text = self.decode(bundle, ref["ids"])
                if text != ref["decoded"] or text != unicodedata.normalize("NFC", s):
                    mismatches.append(f"{s!r}: decode gave {text!r}, reference {ref['decoded']!r}")
        print(f"{bundle.name}: {len(STRINGS)} strings, {len(mismatches)} mismatch(es)")
        for m in mismatches:
            print("MISMATCH", m)
        self.assertEqual(mismatches, [])

    def test_plain_qwen25(self):
        self.compare(self.plain, self.plain / "qwen.json")

    def test_unibiomed_added_tokens(self):
        self.compare(self.extended, self.extended / "tokenizer.json")
        rc, out, _ = triagectl("--bundle", str(self.extended), "[SEG]<IMG_CONTEXT></vp>")
        self.assertEqual((rc, json.loads(out)), (0, [151674, 151667, 151678]))

    def test_long_prompt_time(self):
        """A ~300-token prompt gives the reference's ids, 200 times in one process; prints the time
        of one call with 1 and with 200 prompts (never fails on a time)."""
        text = " ".join([PROMPT] * 8)
        times, outs = [], []
        for n in (1, 200):
            start = time.monotonic()
            rc, out, err = triagectl("--bundle", str(self.extended), "--", *([text] * n))
            times.append(time.monotonic() - start)
            self.assertEqual(rc, 0, err)
            outs.append(out.splitlines())
        ids = json.loads(outs[0][0])
        self.assertEqual(ids, reference(self.extended / "tokenizer.json", [text])[0]["ids"])
        self.assertEqual(outs[1], outs[0] * 200)
        print(f"triagectl tokenize, {len(ids)} tokens: 1 prompt {times[0]:.2f} s, 200 prompts {times[1]:.2f} s "
              "(process start and tokenizer load included)")

    def test_usage_and_errors(self):
        self.assertEqual(triagectl("--bundle", str(self.plain))[0], 2)  # no TEXT
        self.assertEqual(triagectl("just text")[0], 2)  # no --bundle
        self.assertEqual(triagectl("--bundle", str(self.plain), "--decode", "[1, \"x\"]")[0], 2)
        self.assertEqual(triagectl("--bundle", str(self.plain), "--decode", "[1]", "[2]")[0], 2)
        rc, _, err = triagectl("--bundle", str(self.tmp / "missing"), "x")
        self.assertEqual(rc, 1)
        self.assertIn("tokenizer.json", err)
        bad = self.tmp / "bad"
        bad.mkdir()
        (bad / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE", "merges": []}}))
        rc, _, err = triagectl("--bundle", str(bad), "x")
        self.assertEqual(rc, 1)
        self.assertIn("model.vocab", err)


if __name__ == "__main__":
    unittest.main(verbosity=2)
