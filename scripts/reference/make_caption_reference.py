#!/usr/bin/env python3
"""Writes tests/data/captions/cases.jsonl, the reference data of tests/test_caption_cleaner.cpp:
captions and what the official data preparation's CaptionProcessor().clean_caption makes of them.

    python3 -m venv /tmp/capvenv
    /tmp/capvenv/bin/pip install beautifulsoup4 ftfy==6.3.1
    /tmp/capvenv/bin/python scripts/reference/make_caption_reference.py [--captions-py PATH]

Needs Python 3.11 (its unicodedata is Unicode 14.0.0, the version of the C++ tables and of
Debian's PCRE2 10.42), beautifulsoup4 and ftfy 6.3 (the version our ftfy subset follows). The data
was generated with Python 3.11.7, beautifulsoup4 4.15.0 and ftfy 6.3.1.

--captions-py names micro_diffusion/datasets/captions.py of SonyResearch/micro_diffusion. Without
it the file is taken, at run time, from the local mirror of that repository (git show HEAD:...)
into a temporary directory; it is never copied into this repository.

Output: one JSON object per line, {"input": caption, "expected": clean_caption(caption)}, first
the hand-written cases, then the generated ones (fixed seed). Inputs for which the official code
raises (html.parser rejects "<![foo" marked sections) are left out; the C++ test checks that case
directly.
"""
import argparse
import importlib.util
import json
import pathlib
import random
import subprocess
import sys
import tempfile
import urllib.parse
import warnings

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "data" / "captions" / "cases.jsonl"
MIRROR = pathlib.Path("/work/.mirror/SonyResearch+micro_diffusion/repo")
CAPTIONS_PATH = "micro_diffusion/datasets/captions.py"
SEED = 20240611
GENERATED = 520

# ---------------------------------------------------------------------------------------------
# Hand-written cases: one or more per rule of clean_caption_logic, and typical alt-texts.
# ---------------------------------------------------------------------------------------------

HAND = [
    # typical LAION / CC12M alt-texts
    "A beautiful sunset over the mountains",
    "Portrait of a young woman in a red dress, studio shot",
    "Stock Photo - Happy family having picnic in the park",
    "Vector illustration of a cute cartoon cat isolated on white background",
    "Women's Summer Floral Print Maxi Dress - Free Shipping!",
    "Nike Air Max 90 Men's Running Shoes Size 10 | eBay",
    "IMG_20190512_143022.jpg",
    "DSC01234.JPG",
    "Buy Wall Art Canvas Print 24x36 inch - ArtStore.com",
    "Close-up of a coffee cup on a wooden table. Morning light.",
    "Christmas tree with presents &amp; lights",
    "The <b>best</b> pizza in New York City",
    "Click here for more information",
    "Free download: 10 watercolor textures (PNG, JPG)",
    "Page 3 of 10 - Vintage Posters Collection",
    "Wedding ring #12345 in 18k gold",
    "Ultra HD 4K wallpaper 3840x2160",
    "Living room interior design ideas 2020",
    "photo by @john_doe on Instagram",
    "“Life is beautiful” – quote poster",
    "Moskva: Красная площадь зимой",
    "東京タワー Tokyo Tower at night",
    "Beautiful girl - stock photo 1234567",
    "This-Is-A-Very-Long-Slug-Title",
    "this_is_my_cute_cat.png",
    "Product code: JC6640VC - blue",
    "Model 6640vc231 replacement battery",
    "Kitchen &quot;modern&quot; style",
    "Watch online at www.example.com/watch?v=123",
    "Visit https://shop.example.org/item/42 for details",
    "Hand-drawn doodle icons set. Vector.",
    "A man riding a horse on a beach",
    "Cute puppy!!! 😍🐶",
    "Café de Flore, Paris – 1920s",
    "Ελληνικά γράμματα σε πίνακα",
    "¿Qué es esto? ¡Hola!",
    "Size: 10 x 20 cm",
    "«Война и мир» — роман",
    "1:24 Scale Model Car",
    "Episode 12:34  ",
    # URLs
    "http://example.com",
    "https://example.com/a/b/c.html",
    "see http://foo.bar.com/x?y=1&z=2 now",
    "www.google.com",
    "visit www.example.ru today",
    "example.ru",
    "site.net/path/to-page_x",
    "my-site.org/",
    "shop.co",
    "gov.it rules",
    "edu.edu",
    "mail me at john@example.com",
    "user.name@domain.co",
    "HTTP://EXAMPLE.COM/PATH",
    "https:",
    "https:x",
    "http:/",
    "www:abc",
    "ftp://files.example.net/pub",
    "a.b.c.d.com.e",
    "example.community",
    "trailing slash example.com/ here",
    "example.com@",
    "example.com/@user",
    "not a url: example.c",
    "foo.comics",
    "https://t.co/AbCdEf123",
    # HTML tags and entities
    "<b>bold</b> and <i>italic</i>",
    "<p class=\"caption\">A <span style='color:red'>red</span> car</p>",
    "<a href=\"http://x.com\">link text</a>",
    "line one<br>line two<br/>line three",
    "<img src=\"photo.jpg\" alt=\"pic\">Caption after image",
    "<!-- comment -->visible",
    "<script>alert('x')</script>after script",
    "<style>p { color: red }</style>styled",
    "<template>hidden</template>shown",
    "<ruby>漢<rt>kan</rt></ruby> text",
    "a <b>  </b> b",
    "<pre>a  <b>  </b>  b</pre>",
    "<!DOCTYPE html><html><body>doc</body></html>",
    "<?xml version=\"1.0\"?>pi",
    "<![CDATA[raw <data>]]> after",
    "a<![cdata[]]>b",
    "<![if gte mso 9]>office<![endif]>",
    "<!bogus>x",
    "</>empty end tag",
    "</b c>d",
    "a < b > c",
    "I <3 you",
    "x<y",
    "a<b",
    "tag at end <div",
    "open <div class=",
    "<div/ x>",
    "<br></br>x",
    "<person> and <PERSON> at the park",
    "a &amp; b",
    "a &amp b",
    "a &amp;amp; b",
    "&quot;quoted&quot;",
    "&quot;quoted&quot",
    "&lt;b&gt;not bold&lt;/b&gt;",
    "&lt;script&gt;x&lt;/script&gt;",
    "&nbsp;non&nbsp;breaking&nbsp;",
    "&#39;single&#39; &#x27;hex&#x27;",
    "&#8217;s &#8220;curly&#8221;",
    "&copy; 2020 &reg; &trade;",
    "&eacute;t&eacute; &Eacute;T&Eacute;",
    "&hellip; &mdash; &ndash;",
    "&foo; &bar baz",
    "&#150; &#151; &#128;",
    "&#0; &#x110000; &#xD800;",
    "&#1; &#65 &#x41;",
    "x &#123",
    "&#12ab; <b>x</b>",
    "a&b",
    "a &",
    "AT&T",
    "Tom & Jerry",
    "&AMP; &LT; &GT;",
    "&amp;lt;b&amp;gt;",
    "&#38;quot;",
    # @nicknames
    "@user123 posted this",
    "@Иван_Петров в Москве",
    "follow @nike, @adidas and @puma",
    "email@ address",
    # CJK and other scripts
    "中文字幕 Chinese subtitles",
    "日本語のテキスト",
    "ひらがな and カタカナ",
    "한국어 텍스트",
    "㈱ ㍻ ㋐ ㇰ ㇀ ䷀",
    "CJK ext A 㐀㐁 and 鿿",
    "Привет мир",
    "Київ – столиця України",
    "العربية עברית हिन्दी ไทย",
    # dashes and quotes
    "a\u2010b\u2011c\u2012d\u2013e\u2014f\u2015g",
    "em—dash and en–dash",
    "minus − sign",
    "\u058a\u05be\u1400\u1806\u2e17\u2e1a\u2e3a\u2e3b\u2e40\u301c\u3030\u30a0\ufe31\ufe32\ufe58\ufe63\uff0d",
    "double -- dash --- triple",
    "`backtick´ «guillemets» “curly” ¨",
    "‘single’ quotes",
    "„low“ ‚low‘ ‹angle›",
    "\"\"\"AUSVERKAUFT\"\"\"",
    "''double single''",
    "\"quoted caption\"",
    "'single quoted caption'",
    "\"unbalanced",
    "'",
    "\"",
    "\"\"",
    # IP addresses, article ids, literal \n
    "server 192.168.0.1 down",
    "1.2.3.4.5.6",
    "version 10.0.0.255",
    "article 1:23",
    "ends with 4:56   ",
    "line\\nbreak",
    "real\nnewline",
    "tab\tseparated",
    "crlf\r\nline",
    # hashes and digit runs
    "#1 best seller",
    "#123 and #1234 and #12345 and #123456789",
    "#tag #1a #99x",
    "order 123456 shipped",
    "12345 vs 1234567890123",
    "2019-2020 season",
    # file names
    "photo.jpg",
    "my_image.PNG",
    "download file.pdf now",
    "app-release.apk",
    "video.mp4 clip",
    "vector.eps and art.webp and pic.bmp",
    "archive.zip",
    "not.a.jpgfile",
    "image .jpg",
    # dots and bad punctuation
    "wait...",
    "wait.. what",
    "a . b . c",
    "end .",
    "***AUSVERKAUFT***",
    "#AUSVERKAUFT",
    "price ~ 20 (approx) [sic] {x} | y \\ z / w * v",
    "©®™•·º½¾¿¡§",
    "a/b/c",
    "C:\\Users\\photo",
    # separators
    "this-is-my-cute-cat",
    "this_is_my_cute_cat",
    "a-b-c",
    "a-b-c-d",
    "a_b-c_d-e",
    "state-of-the-art",
    "well-known brand",
    # codes
    "jc6640",
    "jc6640vc",
    "6640vc231",
    "ab12 abc123 abcd1234",
    "x1y2z3 j2d1a2a",
    "mp3 mp4 h264 4k 1080p",
    "COVID19 B2B A4",
    "iPhone 11 Pro",
    # shipping / download / click / page
    "free shipping",
    "Worldwide Free Shipping",
    "worldwide  free  shipping now",
    "FREE DOWNLOAD",
    "free download free",
    "download",
    "click for more",
    "Click on image to enlarge",
    "click here",
    "click  for more",
    "page 12",
    "Page  3 of 10",
    "png images",
    "jpg image",
    "pdf",
    "jpeg",
    # sizes
    "1920x1080",
    "3×4",
    "10х20",
    "2.5x3.5 in",
    "100 x 200",
    "4x",
    "size 12x",
    # colons and commas
    "Title : Subtitle",
    "a : b",
    "time 10:30",
    "a,b",
    "1,2,3",
    "end.Start",
    "x./y",
    "Hello,world",
    "a, b",
    # leading and trailing characters
    "'leading quote",
    "trailing quote'",
    "_underscore start",
    "-dash start",
    ",comma start",
    ":colon start",
    ";semicolon start",
    "ends with comma,",
    "ends with dash-",
    "ends with plus+",
    "ends with colon:",
    ".hidden",
    ".dotfile.txt",
    # percent-encoding and plus signs
    "hello%20world",
    "caf%C3%A9",
    "%E2%80%94dash",
    "100% cotton",
    "50%off",
    "%zz%",
    "%C3 alone",
    "%C3%28",
    "%F0%9F%98%80 emoji",
    "%ED%A0%80 surrogate",
    "%2B plus",
    "a+b",
    "C++ programming",
    "1+1=2",
    "%3Cb%3Ebold%3C%2Fb%3E",
    "%26amp%3B",
    # emoji, accents, special characters
    "😀🎉❤️👍🏽🇯🇵👨\u200d👩\u200d👧",
    "e\u0301 vs é",
    "Å ñ ü ß ø",
    "İstanbul ǅemal ﬁsh",
    "Ⅻ ① ٣ x²",
    "ＦＵＬＬＷＩＤＴＨ　ｔｅｘｔ",
    "zero\u200bwidth",
    "mongolian\u180eseparator",
    "sep\x1cchars\x1fhere",
    "nel\x85line\u2028sep",
    "nbsp\u00a0here",
    "ideographic\u3000space",
    "thin\u2009space",
    "ΣΊΣΥΦΟΣ",
    "cafÃ© mojibake",
    # known differences (caption_cleaner.h): ftfy's mojibake repair, HTML5-only entity names
    "wait for itâ€¦ loading",
    "&bigstar; star",
    "fullwidth ＆check; ampersand",
    # html.parser corner cases
    "&#12ab; <b>x</b> &#ab; <i>y</i> z",
    "a<br> </br> b",
    "<script>a</ſcript>b</script>c",
    "<p>x<script>y",
    "<textarea> a <b> </b> </textarea>",
    "<![CDATA[  ]]>x",
    "<!---> <!----> y",
    "a&b.c &foo.bar &amp.x; &#x; &#X41; end",
    "<a b='>'>text</a>",
    "<a b=\"x\"/>y",
    "<input value=a>b</input>c",
    "<div\tclass=x>y</div>",
    "<a =b>c",
    "<a/b>c",
    "< b> <1> </1>x a</ b>c",
    "<?php echo 1; ?>after",
    "<!doctype>x <!DOCTYPE",
    "x <!-- unterminated",
    "&lt;&gt; &lt;p&gt;",
    "nul\x00char <b\x00c>d",
    "<b>unclosed <i>tags",
    "</p>stray end tags</div>",
    "%2 %%41 %41% %E2%82%AC%E2",
    "word " * 120 + "end.com",
    "",
    "   ",
    "a",
    "...",
    "-",
    "+++",
    "%",
]

# ---------------------------------------------------------------------------------------------
# Generated cases: fragments of every kind above, recombined with a fixed seed.
# ---------------------------------------------------------------------------------------------

WORDS = [
    "a", "the", "cat", "dog", "beautiful", "sunset", "over", "mountains", "vintage", "poster",
    "Portrait", "of", "woman", "in", "red", "dress", "New", "York", "City", "skyline", "at",
    "night", "stock", "photo", "vector", "illustration", "isolated", "on", "white", "background",
    "Happy", "Birthday", "card", "T-Shirt", "logo", "design", "wedding", "ring", "gold",
    "watercolor", "painting", "abstract", "seamless", "pattern", "kitchen", "interior", "modern",
    "house", "car", "men's", "women's", "kids", "toy", "Christmas", "tree", "pizza", "coffee",
    "cup", "iPhone", "case", "summer", "beach", "sale", "discount", "images", "page", "click",
    "free", "shipping", "download", "worldwide", "for", "more", "image",
]
FOREIGN = [
    "café", "naïve", "résumé", "straße", "Ελληνικά", "Привет", "мир", "Москва", "Київ", "日本",
    "東京タワー", "中文字", "한국어", "ひらがな", "カタカナ", "العربية", "עברית", "हिन्दी", "ไทย",
    "İstanbul", "ﬁsh", "Ⅻ", "①", "٣", "x²", "ΣΟΦΙΑ", "ñandú", "㐀", "㈱", "䷀", "ㇰ",
]
URLS = [
    "http://example.com/path?x=1", "https://www.site.org/a/b.html", "www.shop.co/items",
    "example.ru", "my-site.net/page", "foo.it", "HTTPS://CAPS.COM/X", "http://", "https:x",
    "mail@example.com", "sub.domain.edu/x-y_z", "t.co/abc", "www.bbc.co.uk/news",
]
HTML = [
    "<b>", "</b>", "<br>", "<br/>", "<p class=\"x\">", "</p>", "<a href='http://x.com'>", "</a>",
    "<i>", "</i>", "<!-- note -->", "<script>var x=1;</script>", "<span style=\"color:red\">",
    "</span>", "<img src=\"a.jpg\" alt=\"pic\">", "<3", "<", ">", "<person>", "<div", "<em>",
    "</em>", "<h1>", "</h1>", "<li>", "<!-->", "</ b>",
]
ENTITIES = [
    "&amp;", "&amp", "&quot;", "&quot", "&lt;b&gt;", "&lt;", "&gt;", "&nbsp;", "&#39;", "&#x27;",
    "&#8217;", "&copy;", "&reg;", "&trade;", "&eacute;", "&Eacute;", "&hellip;", "&mdash;",
    "&foo;", "&", "&#150;", "&#0;", "&amp;amp;", "&amp;quot;", "&#12;", "&#65", "&apos;",
    "&laquo;", "&raquo;", "&ldquo;", "&rdquo;", "&lsquo;", "&rsquo;", "&ndash;", "&middot;",
]
MARKS = [
    "@john_doe", "@user123", "@Иван", "#1", "#123", "#1234", "#12345", "#123456789", "#tag",
    "123456", "2019", "12345678901", "3.14", "1,000", "1.000.000", "192.168.0.1", "1:23",
    "10:30", "\\n", "image.png", "IMG_1234.JPG", "photo.jpeg", "doc.pdf", "app.apk", "video.mp4",
    "file.webp", "a.bmp", "vector.eps", "archive.zip", "jc6640", "jc6640vc", "6640vc231",
    "ab123", "abcd1234", "x1y2z3", "j2d1a2a", "a1b2", "mp3", "4k", "1080p", "1920x1080", "3×4",
    "10х20", "2.5x3.5", "free shipping", "FREE DOWNLOAD", "click for more", "click on image",
    "page 12", "png images", "jpg image", "this_is_my_cute_cat", "this-is-my-cute-cat",
    "state-of-the-art", "a,b", "end.Start", "x./y", " : ", "...", "..", " . ", "%20", "%C3%A9",
    "%E2%80%94", "100%", "%zz", "%C3", "a+b", "C++", "😀", "🎉", "❤️", "👍🏽", "e\u0301",
]
PUNCT = [
    "—", "–", "‐", "―", "−", "〜", "－", "﹣", "“", "”", "‘", "’", "«", "»", "`", "´", "¨", "„",
    "\"", "'", "''", "\"\"", "\"\"\"", "#", "®", "•", "©", "™", "@", "·", "º", "½", "¾", "¿",
    "¡", "§", "~", "(", ")", "[", "]", "{", "}", "|", "\\", "/", "*", "***", "!!!", "?", ";",
    ":", "-", "--", "_", "__", ".", ",", "…",
]
SPACES = [" ", "  ", "\t", "\n", "\u00a0", "\u3000", "\u2009", "\u200b", "\u180e", "\x1c",
          "\x85", "\u2028", "\r\n"]
SEPARATORS = [" "] * 12 + ["", ", ", " - ", " | ", "/", ". ", "  ", "_", "-", "+"]
KINDS = [(WORDS, 30), (FOREIGN, 6), (URLS, 4), (HTML, 6), (ENTITIES, 5), (MARKS, 12),
         (PUNCT, 8), (SPACES, 3)]


def recase(rng, text):
    roll = rng.random()
    if roll < 0.1:
        return text.upper()
    if roll < 0.2:
        return text.title()
    return text


def generated_caption(rng):
    pools, weights = zip(*KINDS)
    pieces = [recase(rng, rng.choice(rng.choices(pools, weights)[0]))
              for _ in range(rng.randint(1, 12))]
    caption = pieces[0]
    for piece in pieces[1:]:
        caption += rng.choice(SEPARATORS) + piece
    roll = rng.random()
    if roll < 0.05:
        caption = urllib.parse.quote_plus(caption)
    elif roll < 0.10:
        caption = "\"" + caption + "\""
    elif roll < 0.14:
        caption = "<p>" + caption + "</p>"
    elif roll < 0.18:
        caption = "  " + caption + " \t"
    return caption


def load_processor(captions_py):
    spec = importlib.util.spec_from_file_location("official_captions", captions_py)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CaptionProcessor()


def extract_captions_py(directory):
    text = subprocess.run(["git", f"--git-dir={MIRROR}", "show", f"HEAD:{CAPTIONS_PATH}"],
                          check=True, capture_output=True, text=True).stdout
    path = pathlib.Path(directory) / "captions.py"
    path.write_text(text, encoding="utf-8")
    return path


def corpus():
    rng = random.Random(SEED)
    seen, out = set(), []
    for caption in HAND + [generated_caption(rng) for _ in range(GENERATED)]:
        if caption not in seen:
            seen.add(caption)
            out.append(caption)
    return out


def write_cases(processor, path):
    from bs4.exceptions import ParserRejectedMarkup

    lines, rejected = [], 0
    for caption in corpus():
        try:
            expected = processor.clean_caption(caption)
        except ParserRejectedMarkup:
            rejected += 1
            continue
        lines.append(json.dumps({"input": caption, "expected": expected}, ensure_ascii=False))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{path}: {len(lines)} cases ({rejected} rejected by html.parser, left out)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions-py", type=pathlib.Path,
                        help="the official captions.py (default: from the local mirror)")
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # bs4 warns when a caption looks like a URL or file name
    with tempfile.TemporaryDirectory() as tmp:
        captions_py = args.captions_py or extract_captions_py(tmp)
        write_cases(load_processor(captions_py), args.out)


if __name__ == "__main__":
    sys.exit(main())
