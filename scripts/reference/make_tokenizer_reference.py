#!/usr/bin/env python3
"""Writes the CLIP tokenizer fixtures of tests/test_clip_tokenizer.cpp with the reference
tokenizers, and the Unicode tables of src/encoders/text_clean.cpp (text_clean_tables.inc).

    python make_tokenizer_reference.py                  # regenerates tests/data/tokenizer/
    python make_tokenizer_reference.py --write-cpp-tables src/encoders/text_clean_tables.inc
    python make_tokenizer_reference.py --show "some text"   # both pipelines, step by step
    python make_tokenizer_reference.py --show-chunk 0x300   # one sweep chunk

Needs Python 3.11 (its unicodedata is Unicode 14.0.0, the version of the C++ tables and of
Debian's PCRE2 10.42), open_clip_torch, transformers (the slow CLIPTokenizer), ftfy and regex.

Fixtures (tests/data/tokenizer/):
  bpe_simple_vocab_16e6.txt.gz  open_clip's vocabulary file, copied unchanged (MIT, see README.md)
  corpus.jsonl   one JSON object per line, one per corpus string:
                 text      the string
                 ftfy_ok   our ftfy subset (text_clean.h) gives ftfy.fix_text's output
                 oc_ok     our open_clip cleaning ('lower') equals open_clip's on this string
                 hf_ok     our HF cleaning equals transformers' (per special-token piece)
                 oc        open_clip.tokenize(text)[0] without the zero padding (ends in 49407)
                 hf        HF input_ids up to the attention mask's length; absent when equal to oc
                 oc_sub    open_clip's tokens with its clean_fn replaced by our subset's Python
                           mirror; absent when equal to oc
                 hf_sub    the same for HF (fix_text replaced); absent when equal to hf
  sweep.jsonl    exhaustive Unicode sweep: for every block of 128 code points holding an assigned
                 character (Unicode 14), the text " ".join(chars) + " " + "".join(chars)
                 (surrogates left out) encoded without special tokens and without truncation;
                 tokens are summarised by count and FNV-1a-64 (over each id as 4 little-endian
                 bytes): n_oc/h_oc, n_hf/h_hf, the subset-mirror ones hs_oc/hs_hf when they
                 differ, oc_ok/hf_ok as above, and skew when the regex module's Unicode version
                 classifies a character of the block (L, N) otherwise than Unicode 14 does.
"""
import argparse
import gzip
import html
import html.entities
import itertools
import json
import pathlib
import random
import re
import shutil
import sys
import tempfile
import unicodedata

import regex

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "data" / "tokenizer"
UNICODE_VERSION = "14.0.0"
SOT, EOT = 49406, 49407

# ---------------------------------------------------------------------------------------------
# The Python mirror of our cleaning subset (keep in step with src/encoders/text_clean.cpp).
# ---------------------------------------------------------------------------------------------

HTML5 = html.entities.html5


def subset_entities():
    """Our named-entity subset: HTML 4.01's 252 names plus &apos;, each with ';', and every name
    that Python also decodes without ';' (the legacy 106 plus AMP COPY GT LT QUOT REG).
    Values come from Python's HTML5 table (so &lang; is U+27E8, as in HTML5)."""
    legacy = {n for n in HTML5 if not n.endswith(";")}
    names = {n + ";" for n in html.entities.name2codepoint} | {"apos;"} | legacy
    names |= {n + ";" for n in legacy}
    return {n: HTML5[n] for n in sorted(names)}


ENTITIES = subset_entities()


def ftfy_upper_aliases():
    """ftfy also decodes the all-caps spelling of lowercase entity names (&EACUTE; -> É) when
    Python's html.unescape leaves that spelling alone; restricted here to our subset."""
    out = {}
    for name, value in ENTITIES.items():
        if name.endswith(";") and name == name.lower():
            upper = "&" + name.upper()
            if html.unescape(upper) == upper:
                out[name.upper()] = value.upper()
    return out


FTFY_UPPER = ftfy_upper_aliases()

# Python's html module: numeric references that are replaced, and code points that vanish.
CP1252_C1 = {
    0x80: "\u20ac", 0x81: "\x81", 0x82: "\u201a", 0x83: "\u0192", 0x84: "\u201e", 0x85: "\u2026",
    0x86: "\u2020", 0x87: "\u2021", 0x88: "\u02c6", 0x89: "\u2030", 0x8A: "\u0160", 0x8B: "\u2039",
    0x8C: "\u0152", 0x8D: "\x8d", 0x8E: "\u017d", 0x8F: "\x8f", 0x90: "\x90", 0x91: "\u2018",
    0x92: "\u2019", 0x93: "\u201c", 0x94: "\u201d", 0x95: "\u2022", 0x96: "\u2013", 0x97: "\u2014",
    0x98: "\u02dc", 0x99: "\u2122", 0x9A: "\u0161", 0x9B: "\u203a", 0x9C: "\u0153", 0x9D: "\x9d",
    0x9E: "\u017e", 0x9F: "\u0178",
}


def numeric_reference(num):
    if num == 0:
        return "\ufffd"
    if num == 0x0D:
        return "\r"
    if num in CP1252_C1:
        return CP1252_C1[num]
    if 0xD800 <= num <= 0xDFFF or num > 0x10FFFF:
        return "\ufffd"
    if (0x1 <= num <= 0x8 or 0xE <= num <= 0x1F or 0x7F <= num <= 0x9F or num == 0xB
            or 0xFDD0 <= num <= 0xFDEF or (num & 0xFFFE) == 0xFFFE):
        return ""
    return chr(num)


CHARREF = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")


def subset_html_unescape(text):
    """Python's html.unescape with the entity table restricted to ENTITIES."""
    def replace(m):
        s = m.group(1)
        if s[0] == "#":
            digits = s[2:] if s[1] in "xX" else s[1:]
            return numeric_reference(int(digits.rstrip(";"), 16 if s[1] in "xX" else 10))
        if s in ENTITIES:
            return ENTITIES[s]
        for x in range(len(s) - 1, 1, -1):
            if s[:x] in ENTITIES:
                return ENTITIES[s[:x]] + s[x:]
        return "&" + s
    return CHARREF.sub(replace, text) if "&" in text else text


FTFY_ENTITY = re.compile(r"&#?[0-9A-Za-z]{1,24};")


def subset_ftfy_unescape(text):
    def replace(m):
        s = m.group(0)
        if s.endswith(";") and s[1:] in ENTITIES:
            return ENTITIES[s[1:]]
        if s[1:] in FTFY_UPPER:
            return FTFY_UPPER[s[1:]]
        if s.startswith("&#"):
            out = subset_html_unescape(s)
            return s if ";" in out else out
        return s
    return FTFY_ENTITY.sub(replace, text)


LIGATURES = {
    "\u0132": "IJ", "\u0133": "ij", "\u0149": "\u02bcn", "\u01f1": "DZ", "\u01f2": "Dz",
    "\u01f3": "dz", "\u01c4": "D\u017d", "\u01c5": "D\u017e", "\u01c6": "d\u017e", "\u01c7": "LJ",
    "\u01c8": "Lj", "\u01c9": "lj", "\u01ca": "NJ", "\u01cb": "Nj", "\u01cc": "nj", "\ufb00": "ff",
    "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl", "\ufb05": "\u017ft",
    "\ufb06": "st",
}


def width_map():
    out = {0x3000: " "}
    for cp in range(0xFF01, 0xFFF0):
        alt = unicodedata.normalize("NFKC", chr(cp))
        if alt != chr(cp):
            out[cp] = alt
    return out


WIDTH = width_map()
TRANSLATE = {ord(k): v for k, v in LIGATURES.items()}
ANSI = re.compile("\033\\[((?:\\d|;)*)([a-zA-Z])")
CONTROL = {c: None for c in itertools.chain(range(0, 9), [0xB], range(0xE, 0x20), [0x7F],
                                             range(0x206A, 0x2070), [0xFEFF],
                                             range(0xFFF9, 0xFFFD))}


def subset_fix_segment(text, unescape):
    while True:
        orig = text
        if unescape:
            text = subset_ftfy_unescape(text)
        # fix_encoding (mojibake detection) is not part of the subset.
        text = re.sub("[\x80-\x9f]", lambda m: CP1252_C1[ord(m.group(0))], text)
        text = text.translate(TRANSLATE)
        text = text.translate(WIDTH)
        text = re.sub("[\u201c-\u201f]", '"', text)
        text = re.sub("[\u02bc\u2018-\u201b]", "'", text)
        text = (text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n")
                .replace("\u2029", "\n").replace("\u0085", "\n"))
        # fix_surrogates: nothing to do, UTF-8 input holds no surrogates.
        text = ANSI.sub("", text)
        text = text.translate(CONTROL)
        text = unicodedata.normalize("NFC", text)
        if text == orig:
            return text


def subset_fix_text(text):
    out, pos, unescape = [], 0, True
    while pos < len(text):
        brk = text.find("\n", pos) + 1 or len(text)
        segment = text[pos:brk]
        if "<" in segment:
            unescape = False
        out.append(subset_fix_segment(segment, unescape))
        pos = brk
    return "".join(out)


def subset_clean_open_clip(text):
    text = subset_html_unescape(subset_html_unescape(subset_fix_text(text)))
    return " ".join(text.split()).lower()


def subset_clean_hf(text):
    return regex.sub(r"\s+", " ", subset_fix_text(text)).strip().lower()


# ---------------------------------------------------------------------------------------------
# Reference tokenizers.
# ---------------------------------------------------------------------------------------------

HF_SPECIAL = re.compile(r"(<\|startoftext\|>|<\|endoftext\|>)")


class References:
    def __init__(self, workdir):
        import ftfy
        import open_clip
        from open_clip import tokenizer as oc_tok
        import transformers
        from transformers import CLIPTokenizer
        from transformers.models.clip import tokenization_clip

        transformers.logging.set_verbosity_error()
        self.ftfy = ftfy
        self.vocab_gz = pathlib.Path(oc_tok.default_bpe())
        self.oc = oc_tok.SimpleTokenizer()
        self.oc_sub = oc_tok.SimpleTokenizer()
        self.oc_sub.clean_fn = subset_clean_open_clip
        self.oc_clean = oc_tok._clean_lower
        self.hf_whitespace_clean = tokenization_clip.whitespace_clean
        vocab, merges = write_hf_files(self.vocab_gz, workdir)
        self.hf = CLIPTokenizer(str(vocab), str(merges))
        self.hf_sub = CLIPTokenizer(str(vocab), str(merges))
        self.hf_sub.fix_text = subset_fix_text
        assert self.hf.fix_text is ftfy.fix_text, "transformers must find ftfy"
        assert open_clip.tokenize(["a"])[0, :3].tolist() == [SOT, 320, EOT]

    def hf_clean(self, text, fix):
        pieces = [p for p in HF_SPECIAL.split(text) if p and not HF_SPECIAL.fullmatch(p)]
        return [self.hf_whitespace_clean(fix(p)).lower() for p in pieces]

    def flags(self, text):
        return {
            "ftfy_ok": subset_fix_text(text) == self.ftfy.fix_text(text),
            "oc_ok": subset_clean_open_clip(text) == self.oc_clean(text),
            "hf_ok": (self.hf_clean(text, subset_fix_text)
                      == self.hf_clean(text, self.ftfy.fix_text)),
        }

    @staticmethod
    def oc_row(tok, text):
        row = tok([text], 77)[0].tolist()
        while row and row[-1] == 0:
            row.pop()
        assert row[-1] == EOT
        return row

    @staticmethod
    def hf_row(tok, text):
        enc = tok(text, padding="max_length", max_length=77, truncation=True)
        return enc["input_ids"][: sum(enc["attention_mask"])]

    def corpus_record(self, text):
        rec = {"text": text, **self.flags(text)}
        oc, hf = self.oc_row(self.oc, text), self.hf_row(self.hf, text)
        oc_sub, hf_sub = self.oc_row(self.oc_sub, text), self.hf_row(self.hf_sub, text)
        rec["oc"] = oc
        if hf != oc:
            rec["hf"] = hf
        if oc_sub != oc:
            rec["oc_sub"] = oc_sub
        if hf_sub != hf:
            rec["hf_sub"] = hf_sub
        if rec["oc_ok"]:
            assert oc_sub == oc, text
        if rec["hf_ok"]:
            assert hf_sub == hf, text
        return rec


def write_hf_files(vocab_gz, workdir):
    """vocab.json and merges.txt in the layout of HF's openai/clip-vit-* repositories, derived
    from open_clip's merges file (same vocabulary; specials named <|startoftext|> <|endoftext|>)."""
    lines = gzip.open(vocab_gz).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    merges = [tuple(line.split()) for line in lines]
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    chars = [chr(b) for b in bs] + [chr(256 + n) for n in range(256 - len(bs))]
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    workdir = pathlib.Path(workdir)
    (workdir / "vocab.json").write_text(
        json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False), encoding="utf-8")
    (workdir / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8")
    return workdir / "vocab.json", workdir / "merges.txt"


# ---------------------------------------------------------------------------------------------
# Corpus.
# ---------------------------------------------------------------------------------------------

SUBJECTS = ["cat", "dog", "astronaut", "castle", "robot", "teapot", "fox", "lighthouse", "city",
            "mountain", "owl", "bicycle", "dragon", "forest", "violin", "sailboat", "cupcake",
            "samurai", "octopus", "cathedral", "motorcycle", "jellyfish", "windmill", "tiger",
            "library", "waterfall", "penguin", "skyscraper", "mushroom", "knight"]
ADJECTIVES = ["red", "tiny", "ancient", "glowing", "rusty", "fluffy", "futuristic", "melancholic",
              "neon", "translucent", "golden", "snowy", "abandoned", "whimsical", "giant",
              "crystal", "steampunk", "minimalist", "baroque", "pastel"]
PLACES = ["on a beach", "in space", "under the sea", "at sunset", "in a misty forest",
          "on the moon", "in Tokyo at night", "inside a cathedral", "on a mountain top",
          "in the rain", "at the Louvre", "in a cyberpunk alley", "on Mars", "in a snow globe"]
STYLES = ["oil painting", "watercolor", "35mm photo", "digital art", "8k, highly detailed",
          "trending on artstation", "by Greg Rutkowski", "unreal engine 5", "studio lighting",
          "bokeh", "isometric", "ukiyo-e", "pixel art", "low poly", "line drawing", "HDR"]

ACCENTED = [
    "café crème brûlée", "naïve façade", "Crème Fraîche", "Ångström", "smörgåsbord",
    "Straße", "STRASSE", "Übermensch", "Fräulein Müller", "jalapeño piñata", "São Paulo",
    "coração", "Łódź", "Kraków", "Dvořák", "Škoda", "Türkçe İstanbul", "ıIiİ", "Ærøskøbing",
    "Þórsmörk", "Reykjavík", "Hà Nội phở", "Tiếng Việt", "Nguyễn", "résumé", "Zoë", "Beyoncé",
    "El Niño", "Mañana", "Ça va?", "œuvre", "Œdipe", "Ğğ Şş", "Čevapčići", "Ελλάδα",
    "ΟΔΟΣ", "ΟΔΟΣ ΣΟΦΙΑΣ", "Σίσυφος", "ΣΑΣ.", "Σ", "ΑΣ'Σ", "Москва", "ПРИВЕТ мир",
    "Ёлка", "Україна", "Հայաստան", "ქართული", "שלום עולם", "مرحبا بالعالم", "नमस्ते दुनिया",
    "สวัสดีครับ", "ᾳ ᾼ ῳ", "ǅungla ǈubav ǋegoš", "ﬁnal ﬂow ﬀ ﬃ ﬄ ﬅ ﬆ", "Ĳsselmeer ĳs",
]
CJK = [
    "東京タワー", "一只可爱的猫", "猫が好きです", "고양이 사진", "한국어 텍스트", "中文和English混合",
    "漢字かなカナ", "ｶﾀｶﾅ ﾊﾝｶｸ", "ﾊﾟﾋﾟﾌﾟﾍﾟﾎﾟ", "北京烤鸭 🦆", "富士山の夕焼け", "「こんにちは」",
    "『引用』【強調】", "１２３４５", "ＡＢＣ ｄｅｆ", "ＬＯＵＤ　ＮＯＩＳＥＳ", "全角！？", "龍と虎",
    "豈 更 車 賈", "𠀀𠀁𪜀", "ㄱㄴㄷ", "ﾟﾞ", "ㅎㅏㄴ", "（括弧）", "〜波ダッシュ〜", "〒100-0001",
    "アイスクリーム🍦", "日本語の文章です。", "你好，世界！", "ㄅㄆㄇ",
]
EMOJI = [
    "😀", "🐱‍👤", "👨‍👩‍👧‍👦", "🇯🇵 🇺🇸 🇫🇷", "👍🏽", "❤️", "❤", "1️⃣ #️⃣", "🏳️‍🌈", "✨🌟⭐",
    "a cat 🐈 on a mat", "🔥🔥🔥", "🤖👾🎮", "🍕+🍺=❤", "🧑🏿‍🚀", "☕️ coffee", "👩‍💻", "🦄🌈",
    "⚡️", "🎉🎊", "✔ No problems", "♥♦♣♠", "☃", "★☆", "⛄⛅", "🀄", "🂡", "🏴‍☠️",
    "💩", "🙈🙉🙊",
]
ENTITY_STRINGS = [
    "Tom &amp; Jerry", "5 &lt; 6 &gt; 4", "&quot;quoted&quot;", "it&apos;s", "it&#39;s",
    "it&#x27;s", "caf&eacute;", "CAF&EACUTE;", "P&EACUTE;REZ", "&Eacute;cole", "&copy; 2024",
    "&reg; &trade;", "&hellip;", "&mdash; &ndash;", "&nbsp;non&nbsp;breaking&nbsp;",
    "&amp;amp;", "&amp;lt;b&amp;gt;", "&amp;amp;amp;", "&lt;b&gt;bold&lt;/b&gt;",
    "<b>bold</b> &amp; more", "a<b &amp; c", "x &amp; y\n<p>&amp;</p>", "&amp\nfoo",
    "AT&T", "AT&Tamp;", "R&D", "this&not that", "&notin;", "&notit;", "&ampfoo", "&lt3",
    "&#128512;", "&#x1F600;", "&#X1f600;", "&#0;", "&#13;", "&#128;", "&#150;", "&#x9F;",
    "&#11;", "&#x110000;", "&#xD800;", "&#65", "&#65a;", "&#x41", "&#xZZ;", "&#;", "&;",
    "&", "&&&", "& amp;", "&AMP;", "&AMP", "&COPY", "&frac12; cup", "&FRAC12;", "&szlig;",
    "&SZLIG;", "&Ntilde; &ntilde; &NTILDE; &nTILDE;", "&lang;x&rang;", "&euro;100",
    "&check;", "&hearts;", "&HEARTS;", "&bigstar;", "&NotEqualTilde;", "&Afr;", "&fjlig;",
    "&alpha;&beta;&gamma;", "&ALPHA;", "&Sigma;&sigma;&sigmaf;", "&larr;&rarr;&harr;",
    "&deg;C", "&micro;m", "&times;", "&divide;", "&sup2;", "&para;", "&sect;", "&middot;",
    "&laquo;guillemets&raquo;", "&lsquo;single&rsquo;", "&ldquo;double&rdquo;",
    "&#8220;curly&#8221;", "&#x2019;", "&shy;", "&zwj;", "&zwnj;", "&lrm;", "&rlm;", "&thinsp;",
    "&emsp;em&ensp;en", "&amp;#39;", "&amp;quot;", "&amp;nbsp;", "&amp;eacute;", "&nbsp",
    "&copy", "&COPY;", "&reg", "&eacutex", "&eacute", "&#0000065;", "&#x00041;",
    "&aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa;", "&#99999999999999999999;",
]
QUOTES = [
    "“Hello,” she said.", "‘single’ quotes", "it’s a dog’s life", "‛reversed‟", "„German“",
    "«French»", "‹angle›", "5′ 10″", "don’t", "ʼokina", "I’M HERE", "We’LL see", "she’d",
    "they’re", "you’ve", "I’m", "it’S", "\"straight\" 'quotes'", "'tis", "rock 'n' roll",
    "don't", "DON'T", "it's", "IT'S", "we'll", "WE'LL", "I'd", "I'D", "you're", "YOU'RE",
    "they've", "I'm", "I'M", "'s", "'S", "'sss", "''s", "x'y", "it'ſ", "'K",
    "em—dash", "en–dash", "minus − sign", "ellipsis…", "bullet • point", "†‡", "‰", "™",
]
WHITESPACE = [
    "", " ", "  ", "\t", "\n", "\r\n", "\r", " \t\n\r\x0b\x0c ", "\u00a0", "\u3000",
    "\u2028", "\u2029", "\u0085", "\u2003\u2002\u2009", "\u200b", "\ufeff", "\u1680",
    "\u202f\u205f", "  leading", "trailing   ", "  both  ", "many     spaces   here",
    "tab\tseparated\tvalues", "line\nbreaks\nhere", "windows\r\nline\r\nbreaks",
    "old mac\rline", "nbsp\u00a0between", "ideographic\u3000space", "thin\u2009space",
    "zero\u200bwidth", "BOM\ufeffinside", "\ufeffBOM at start", "para\u2029sep", "line\u2028sep",
    "nel\u0085char", "vt\x0bff\x0cchars", "fs\x1cgs\x1drs\x1eus\x1f", "a \u180e b",
    "mongolian\u180evowel", "ogham\u1680space",
]
CONTROL_STRINGS = [
    "\x1b[31mred text\x1b[0m", "\x1b[1;32;40mbold green\x1b[m", "\x1b[2J\x1b[H clear",
    "\x1b[٣m arabic digit", "\x1b]0;title\x07", "bell\x07char", "nul\x00char", "del\x7fchar",
    "c1\x80\x81\x85\x8d\x9fchars", "\x96 dash \x97", "\x93quoted\x94", "soft\u00adhyphen",
    "zwj\u200djoin", "zwnj\u200cnon", "lrm\u200emark", "rlm\u200fmark", "\u202aembedded\u202c",
    "\u206adeprecated\u206f", "\ufff9annot\ufffb", "obj\ufffcrepl", "repl\ufffdchar",
    "tag\U000e0041\U000e007fchars", "\U0001d173music\U0001d17a", "\x01\x02\x03", "\x0e\x0f",
    "variation\ufe0fselector", "combining\u0301 only", "\u0301leading combining",
    "a\u0345x", "\u0345", "ᾳ\u0345", "e\u0301\u0302\u0323", "q\u0307\u0323",
    "\u1100\u1161\u11a8", "\u1100\u1161 \u1100", "\u0958\u0959", "\u212b\u2126\u212a",
    "\u0340\u0341\u0343\u0344", "\u0f73\u0f75\u0f81", "\u2000\u2001", "Ａ\u0301",
]
MOJIBAKE = [
    "Ã©", "cafÃ©", "â€™", "â€œquotedâ€\x9d", "Ã¼ber", "Ã  la mode", "voilÃ le travail",
    "sÃ³", "âœ” No problems", "&macr;\\_(ã\x83\x84)_/&macr;", "ÃƒÂ©", "Ð¿Ñ€Ð¸Ð²ÐµÑ‚",
    "Ã¤Ã¶Ã¼", "â€¦", "Â£100", "Â©", "Â ", "ï»¿BOM", "Ã\xa0", "Ã¡rbol",
]
SPECIAL = [
    "<start_of_text>", "<end_of_text>", "<START_OF_TEXT>", "a <end_of_text> b",
    "<|startoftext|>", "<|endoftext|>", "a <|endoftext|> b", "<|ENDOFTEXT|>",
    "<|endoftext|><|endoftext|>", "x<|endoftext|>y", "<|endoftext<|endoftext|>",
    "<|startoftext|>hello<|endoftext|>", "<ſtart_of_text>", "<end_of_text><end_of_text>",
    "&lt;end_of_text&gt;", "&lt;|endoftext|&gt;",
]
PUNCT = [
    "Hello, world!", "What?!", "Wait... what?", "(parentheses) [brackets] {braces}",
    "email@example.com", "https://example.com/path?q=1&r=2#frag", "#hashtag @mention",
    "$1,000,000.00", "3.14159265358979", "1st 2nd 3rd 4th", "2024-01-31T12:34:56Z",
    "12:30pm", "50% off!!!", "C++ and C#", "a/b\\c|d", "~tilde~ `backtick`", "^caret^",
    "100°F", "½ ¼ ¾", "x² + y³ = z¹", "①②③", "ⅠⅡⅢⅣ ⅰⅱⅲ", "٣٤٥ arabic digits", "१२३",
    "૧૨", "0x1F600", "1e-10", "-42", "+3", "=== --- ***", "!!!", "???", "...", "::",
    "<>", "<<>>", "</w>", "a</w>b", "'", "\"", "-", "_", "__init__", "snake_case_name",
    "camelCaseName", "PascalCaseName", "UPPER_CASE", "kebab-case-name", "dot.separated.name",
    "a.b.c.", "e.g.", "i.e.", "U.S.A.", "Mr. Smith", "Dr. Who?", "no. 5", "#1", "№1",
    "§ 3 ¶ 2", "©®™", "¥€£$¢₹₩₽", "±×÷", "≤≥≠≈∞", "∑∏∫√", "←→↑↓", "♩♪♫♬", "☺☻", "✓✗",
    "⌘⌥⇧", "∀x∃y", "ℕℤℚℝℂ", "𝔸𝕓𝒸𝓭", "𝟘𝟙𝟚", "ℌℑℜ", "ｈｔｔｐ：／／", "1234567890",
    "0000000", "9" * 40, "3,14", "1/2", "10:1", "v1.2.3-rc.4+build.5",
]
MIXED_CASE = [
    "HeLLo WoRLD", "ALL CAPS SENTENCE", "all lower sentence", "Title Case Sentence",
    "McDonald's", "iPhone", "eBay", "NASA", "LaTeX", "YouTube", "JavaScript", "macOS",
    "DeepMind", "OpenAI CLIP", "ViT-H-14", "DFN5B", "SDXL VAE", "MicroDiT", "StyleGAN2-ADA",
    "GPT-4o", "AbCdEfGhIjKlMnOpQrStUvWxYz", "aBcDeFgHiJkLmNoPqRsTuVwXyZ",
]


def prompts(rng, n):
    out = []
    for _ in range(n):
        parts = [rng.choice(["a", "an", "the", "A", "The", "two", "three", "many"]),
                 rng.choice(ADJECTIVES), rng.choice(SUBJECTS), rng.choice(PLACES)]
        text = " ".join(parts)
        for _ in range(rng.randint(0, 3)):
            text += rng.choice([", ", " | ", "; ", ". ", " - "]) + rng.choice(STYLES)
        if rng.random() < 0.3:
            text = text.upper() if rng.random() < 0.3 else text.title()
        if rng.random() < 0.2:
            text += rng.choice(["!", "?", "...", " :)", " (4k)", " [v2]", "\n"])
        out.append(text)
    return out


def long_prompts(rng, n):
    words = SUBJECTS + ADJECTIVES + STYLES + ["and", "with", "of", "the", "a", "in", "on"]
    out = []
    for i in range(n):
        k = rng.randint(40, 140)
        text = " ".join(rng.choice(words) for _ in range(k))
        if i % 4 == 1:
            text = ", ".join(text.split(" "))
        if i % 4 == 2:
            text = "東京 " * (k // 4) + text
        out.append(text)
    return out


def boundary_prompts():
    # Single-token words: n of them give n content tokens, around the truncation boundary.
    out = []
    for n in list(range(70, 80)) + [150, 200]:
        out.append(" ".join(["cat"] * n))
        out.append(" ".join(["dog", "cat"] * (n // 2)) + (" dog" if n % 2 else ""))
    out.append("a" * 400)
    out.append("supercalifragilisticexpialidocious " * 10)
    out.append("😀" * 60)
    out.append("é" * 100)
    return out


POOL = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    " .,;:!?'\"()[]{}<>/\\|-_+=*&^%$#@~`"
    "éèêëàâäôöûüçñßæøåÉÈÀÇÑÆØÅœŒ" "ΑΒΓΔΣσςαβγδ" "АБВабв" "東京猫犬日本語한국어カタカナひらがな"
    "😀🐈❤🇯🇵👍🏽" "“”‘’«»—–…•" "ＡＢＣａｂｃ１２３　！" "ﬁﬂ" "\u00a0\u2009\u200b\t\n"
    "\u0301\u0308\u0327" "½²³°©®™€£¥"
)
ENTITY_POOL = ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;", "&eacute;", "&nbsp;", "&copy;",
               "&#x1F600;", "&hellip;", "&amp;amp;", "&EACUTE;", "&Auml;", "&#8217;"]


def fuzz(rng, n):
    out = []
    for _ in range(n):
        k = rng.randint(1, 40)
        pieces = []
        for _ in range(k):
            pieces.append(rng.choice(ENTITY_POOL) if rng.random() < 0.08 else rng.choice(POOL))
        out.append("".join(pieces))
    return out


def variants(strings, rng):
    """Upper/lower/NFD/padded variants of the hand-written strings."""
    out = []
    for s in strings:
        out.append(s.upper())
        out.append(unicodedata.normalize("NFD", s))
        out.append("  " + s + " \n ")
        out.append(f"a photo of {s}, {rng.choice(STYLES)}")
    return out


def build_corpus():
    rng = random.Random(20240531)
    hand = (ACCENTED + CJK + EMOJI + ENTITY_STRINGS + QUOTES + WHITESPACE + CONTROL_STRINGS
            + MOJIBAKE + SPECIAL + PUNCT + MIXED_CASE)
    corpus = (hand + variants(ACCENTED + CJK + EMOJI + QUOTES + MIXED_CASE, rng)
              + prompts(rng, 450) + long_prompts(rng, 80) + boundary_prompts() + fuzz(rng, 300))
    seen, unique = set(), []
    for s in corpus:
        if s not in seen:
            seen.add(s)
            unique.append(s)
    return unique


# ---------------------------------------------------------------------------------------------
# Unicode sweep.
# ---------------------------------------------------------------------------------------------

SWEEP_BLOCK = 128
REGEX_L, REGEX_N = regex.compile(r"\p{L}"), regex.compile(r"\p{N}")


def fnv1a64(ids):
    h = 0xCBF29CE484222325
    for i in ids:
        for b in int(i).to_bytes(4, "little"):
            h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def sweep_text(first):
    chars = [chr(c) for c in range(first, first + SWEEP_BLOCK) if not 0xD800 <= c <= 0xDFFF]
    return " ".join(chars) + " " + "".join(chars)


def sweep_blocks():
    for first in range(0, 0x110000, SWEEP_BLOCK):
        cps = range(first, first + SWEEP_BLOCK)
        if first >= 0xF0000 and first != 0xF0000:
            continue  # supplementary private use planes: one block stands for them
        if any(unicodedata.category(chr(c)) not in ("Cn", "Cs") for c in cps):
            yield first


def skewed(first):
    for c in range(first, first + SWEEP_BLOCK):
        ch, cat = chr(c), unicodedata.category(chr(c))
        if bool(REGEX_L.match(ch)) != cat.startswith("L"):
            return True
        if bool(REGEX_N.match(ch)) != cat.startswith("N"):
            return True
    return False


def sweep_record(refs, first):
    text = sweep_text(first)
    oc, hf = refs.oc.encode(text), refs.hf.encode(text, add_special_tokens=False)
    oc_sub, hf_sub = refs.oc_sub.encode(text), refs.hf_sub.encode(text, add_special_tokens=False)
    rec = {"first": first, "n_oc": len(oc), "h_oc": fnv1a64(oc), "n_hf": len(hf),
           "h_hf": fnv1a64(hf)}
    if oc_sub != oc:
        rec["hs_oc"] = fnv1a64(oc_sub)
        rec["ns_oc"] = len(oc_sub)
    if hf_sub != hf:
        rec["hs_hf"] = fnv1a64(hf_sub)
        rec["ns_hf"] = len(hf_sub)
    flags = refs.flags(text)
    rec["oc_ok"], rec["hf_ok"] = flags["oc_ok"], flags["hf_ok"]
    rec["skew"] = skewed(first)
    return rec


# ---------------------------------------------------------------------------------------------
# C++ tables for src/encoders/text_clean.cpp, written as src/encoders/text_clean_tables.inc.
# ---------------------------------------------------------------------------------------------


def ranges(cps):
    out = []
    for c in cps:
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


def u32(s):
    """A C++ U"..." literal: printable ASCII as is, the rest as universal character names."""
    def one(c):
        if c in "\\\"":
            return "\\" + c
        if " " <= c <= "~":
            return c
        if ord(c) < 0x20:
            return f"\\{ord(c):03o}"
        return f"\\u{ord(c):04X}" if ord(c) < 0x10000 else f"\\U{ord(c):08X}"
    return 'U"' + "".join(one(c) for c in s) + '"'


def packed(items, indent="    "):
    lines, line = [], indent
    for item in items:
        piece = item + ","
        if len(line) + len(piece) + 1 > 100:
            lines.append(line.rstrip())
            line = indent
        line += piece + " "
    if line.strip():
        lines.append(line.rstrip())
    return "\n".join(lines)


def cpp_tables():
    assert unicodedata.unidata_version == UNICODE_VERSION, unicodedata.unidata_version
    all_cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    out = [f"// Written by scripts/reference/make_tokenizer_reference.py --write-cpp-tables from",
           f"// Python {sys.version.split()[0]}'s unicodedata (Unicode {UNICODE_VERSION}) and",
           "// html.entities. Do not edit by hand.",
           "// clang-format off"]

    # Canonical decompositions (one level), with the flag "recomposes under NFC".
    decomp = []
    for c in all_cps:
        d = unicodedata.decomposition(chr(c))
        if d and not d.startswith("<"):
            parts = [int(x, 16) for x in d.split()]
            composes = len(parts) == 2 and unicodedata.normalize("NFC", chr(c)) == chr(c)
            decomp.append(f"{{0x{c:X}, 0x{parts[0]:X}, 0x{parts[1] if len(parts) > 1 else 0:X}, "
                          f"{int(composes)}}}")
    out.append(f"constexpr Decomposition kDecompositions[] = {{  // {len(decomp)}")
    out.append(packed(decomp))
    out.append("};")

    ccc = []
    for c in all_cps:
        v = unicodedata.combining(chr(c))
        if v:
            if ccc and ccc[-1][1] == c - 1 and ccc[-1][2] == v:
                ccc[-1][1] = c
            else:
                ccc.append([c, c, v])
    out.append(f"constexpr CombiningClassRange kCombiningClasses[] = {{  // {len(ccc)}")
    out.append(packed(f"{{0x{a:X}, 0x{b:X}, {v}}}" for a, b, v in ccc))
    out.append("};")

    lower = []
    for c in all_cps:
        low = chr(c).lower()
        if low == chr(c) or len(low) != 1:
            continue
        delta = ord(low) - c
        if lower and lower[-1][2] == delta and c - lower[-1][1] in (1, 2) and (
                lower[-1][3] in (0, c - lower[-1][1])):
            lower[-1][3] = c - lower[-1][1]
            lower[-1][1] = c
        else:
            lower.append([c, c, delta, 0])
    multi = [c for c in all_cps if len(chr(c).lower()) != 1]
    assert multi == [0x130], multi
    out.append(f"constexpr LowercaseRange kLowercase[] = {{  // {len(lower)}")
    out.append(packed(f"{{0x{a:X}, 0x{b:X}, {d}, {s or 1}}}" for a, b, d, s in lower))
    out.append("};")

    def final_sigma(s):
        return s.lower()[-1] == "\u03c2"

    cased = [c for c in all_cps if final_sigma(chr(c) + "\u03a3")]
    cased_set = set(cased)
    ignorable = []
    for c in all_cps:
        if c in cased_set:
            ok = ("A\u03a3" + chr(c)).lower()[1] == "\u03c2"
        else:
            ok = final_sigma("A" + chr(c) + "\u03a3")
        if ok:
            ignorable.append(c)
    for name, cps in [("kCased", cased), ("kCaseIgnorable", ignorable),
                      ("kDecimalDigits", [c for c in all_cps
                                          if unicodedata.category(chr(c)) == "Nd"])]:
        rs = ranges(cps)
        out.append(f"constexpr CodePointRange {name}[] = {{  // {len(rs)}")
        out.append(packed(f"{{0x{a:X}, 0x{b:X}}}" for a, b in rs))
        out.append("};")

    width = [f"{{0x{c:X}, {u32(v)}}}" for c, v in sorted(WIDTH.items())]
    out.append(f"constexpr Replacement kCharacterWidth[] = {{  // {len(width)}")
    out.append(packed(width))
    out.append("};")

    ents = sorted(ENTITIES.items())
    out.append(f"constexpr Entity kEntities[] = {{  // {len(ents)}, sorted by name")
    out.append(packed(f'{{"{n}", {u32(v)}}}' for n, v in ents))
    out.append("};")
    ups = sorted(FTFY_UPPER.items())
    out.append(f"constexpr Entity kFtfyUppercaseEntities[] = {{  // {len(ups)}, sorted by name")
    out.append(packed(f'{{"{n}", {u32(v)}}}' for n, v in ups))
    out.append("};")
    out.append("// clang-format on")
    return "\n".join(out)


def write_cpp_tables(path):
    pathlib.Path(path).write_text(cpp_tables() + "\n", encoding="utf-8")
    print(f"wrote {path}")


# ---------------------------------------------------------------------------------------------


def show(refs, text):
    print("input        ", ascii(text))
    print("ftfy         ", ascii(refs.ftfy.fix_text(text)))
    print("subset       ", ascii(subset_fix_text(text)))
    print("oc clean     ", ascii(refs.oc_clean(text)))
    print("oc subset    ", ascii(subset_clean_open_clip(text)))
    print("hf clean     ", ascii(refs.hf_clean(text, refs.ftfy.fix_text)))
    print("hf subset    ", ascii(refs.hf_clean(text, subset_fix_text)))
    print("oc tokens    ", refs.oc.encode(text))
    print("oc sub tokens", refs.oc_sub.encode(text))
    print("hf tokens    ", refs.hf.encode(text, add_special_tokens=False))
    print("hf sub tokens", refs.hf_sub.encode(text, add_special_tokens=False))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=pathlib.Path, default=OUT)
    ap.add_argument("--write-cpp-tables", metavar="CPP")
    ap.add_argument("--show", metavar="TEXT")
    ap.add_argument("--show-chunk", metavar="FIRST")
    args = ap.parse_args()
    if args.write_cpp_tables:
        write_cpp_tables(args.write_cpp_tables)
        return
    with tempfile.TemporaryDirectory() as tmp:
        refs = References(tmp)
        if args.show is not None:
            show(refs, args.show)
            return
        if args.show_chunk is not None:
            show(refs, sweep_text(int(args.show_chunk, 0)))
            return
        args.out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(refs.vocab_gz, args.out / "bpe_simple_vocab_16e6.txt.gz")

        corpus = build_corpus()
        counts = {"ftfy_ok": 0, "oc_ok": 0, "hf_ok": 0}
        with open(args.out / "corpus.jsonl", "w", encoding="utf-8") as f:
            for text in corpus:
                rec = refs.corpus_record(text)
                for k in counts:
                    counts[k] += rec[k]
                f.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")
        print(f"corpus: {len(corpus)} strings, agreeing: {counts}")

        n, ok, skew = 0, {"oc_ok": 0, "hf_ok": 0}, 0
        with open(args.out / "sweep.jsonl", "w", encoding="utf-8") as f:
            for first in sweep_blocks():
                rec = sweep_record(refs, first)
                n += 1
                skew += rec["skew"]
                for k in ok:
                    ok[k] += rec[k] and not rec["skew"]
                f.write(json.dumps(rec, separators=(",", ":")) + "\n")
        print(f"sweep: {n} blocks of {SWEEP_BLOCK}, agreeing: {ok}, Unicode-version skew: {skew}")
        total = sum(p.stat().st_size for p in args.out.iterdir())
        print(f"{args.out}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
