"""Deterministic, plausible FTO reports (the ``task_status`` 2 payload).

A report depends only on its :class:`ReportInputs`: its random generator is seeded from
sha256 of the image identity, the countries and the language, so the same image always gets
the same report and different images get different ones. The numbers hold together:

* ``score`` is a 0..1 similarity; ``risk_level`` is ``High`` from 0.8, ``Medium`` from 0.6,
  else ``Low``; ``rerank_score`` is on a 0..100 scale.
* ``rrf_score = 1/(k + rerank_rank) + 1/(k + traditional_rank)`` with ``k_value`` 60.
* Every ``authority``/``country`` is one of the requested countries; ``apdt`` is never before
  ``apply_start_time`` (nor after ``apply_end_time``).
* ``comparisons`` (0..8, plus any published ones) are the top fused results; the country
  lists and the suspected infringement count follow from their risk levels, so some images
  come out clean.
* LLM texts are Chinese for ``lang="cn"`` and English otherwise.
* The product follows the requested Locarno class: a request for ``09-01`` (bottles) is a
  bottle and matches bottles (titles and ``loc`` of that class, ``loc_match`` 1); without a
  LOC the product is drawn from the seed and most neighbours share its class. An unknown
  class gets neutral titles ("Design (LOC 12-34)").
* Legal statuses mix valid (3 in 5), pending (1 in 5) and invalid (1 in 5), within the
  requested ``statuses``.
* Publications (:attr:`ReportInputs.publish_round`): round ``k`` publishes new designs for a
  ``publish_share`` of images, chosen by sha256 of the image and ``k``. A hit adds one or two
  new High designs of the product's class (valid or pending: new rights are live) at the
  top of the report, with patent numbers that depend on the image and ``k`` only.
  Everything else stays as it was, so a rescreen differs exactly where something was
  published.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import random
import struct
import uuid
import zlib
from typing import Any, Final

import attrs

__all__ = ["K_VALUE", "ReportInputs", "build_1v1_result", "build_result", "risk_level"]

#: The RRF constant the platform reports (``rrffusion_response.k_value``).
K_VALUE: Final = 60
_DEFAULT_START: Final = dt.date(2015, 1, 1)
_DEFAULT_END: Final = dt.date(2025, 12, 31)

# (English title, Chinese title, Locarno class); several products per common class.
_PRODUCTS: Final = (
    ("Inflatable Santa", "充气圣诞老人", "11-02"),
    ("Christmas ornament", "圣诞装饰品", "11-02"),
    ("Smartphone case", "手机壳", "03-01"),
    ("Backpack", "背包", "03-01"),
    ("Tote bag", "手提袋", "03-01"),
    ("Table lamp", "台灯", "26-05"),
    ("Floor lamp", "落地灯", "26-05"),
    ("Pendant lamp shade", "吊灯灯罩", "26-05"),
    ("Water bottle", "水瓶", "09-01"),
    ("Insulated bottle", "保温瓶", "09-01"),
    ("Drinking bottle with lid", "带盖饮水瓶", "09-01"),
    ("Packaging box", "包装盒", "09-03"),
    ("Wireless earphone", "无线耳机", "14-01"),
    ("Portable speaker", "便携音箱", "14-01"),
    ("Toy vehicle", "玩具车", "21-01"),
    ("Building block toy", "积木玩具", "21-01"),
    ("Plush toy", "毛绒玩具", "21-01"),
    ("Camping tent", "帐篷", "21-03"),
    ("Office chair", "办公椅", "06-01"),
    ("Dining chair", "餐椅", "06-01"),
    ("Sofa", "沙发", "06-01"),
    ("Side table", "边桌", "06-03"),
    ("Coffee table", "茶几", "06-03"),
    ("Mug", "马克杯", "07-01"),
    ("Travel cup", "随行杯", "07-01"),
    ("Electric kettle", "电热水壶", "07-02"),
    ("Kitchen utensil", "厨房用具", "07-03"),
    ("Cutting board", "砧板", "07-03"),
    ("Flower pot", "花盆", "07-06"),
    ("Wrist watch", "手表", "10-02"),
    ("Smartwatch", "智能手表", "10-02"),
    ("Pet scratching post", "宠物抓柱", "30-01"),
    ("Pet bed", "宠物床", "30-01"),
)
_TITLE_SUFFIXES: Final = (("", ""), (" with stand", "（带支架）"), (" (set)", "（套件）"))
_PARTS: Final = (
    ("top surface", "顶部"),
    ("base", "底座"),
    ("handle", "把手"),
    ("side profile", "侧面轮廓"),
    ("decorative pattern", "装饰图案"),
)
_NAMES: Final = ("Li Wei", "Zhang Min", "John Smith", "Sato Hiroshi", "Kim Min-jun", "Anna Muller")
_ASSIGNEES: Final = (
    "Shenzhen Bright Home Co., Ltd.",
    "Acme Consumer Products Inc.",
    "Nippon Design K.K.",
    "Seoul Living Co., Ltd.",
    "Euro Forms GmbH",
)
_LEVEL_CN: Final = {"High": "高", "Medium": "中", "Low": "低"}
_STATUS_CN: Final = {1: "有效", 2: "失效", 3: "审查中"}
_STATUS_EN: Final = {1: "valid", 2: "invalid", 3: "pending"}


@attrs.define(frozen=True, slots=True, kw_only=True)
class ReportInputs:
    """What a report depends on (hashable, so results can be cached).

    Attributes:
        image: The image identity (url, or ``sha256:<hex>`` of the base64 text).
        countries: Requested countries, in request order without duplicates.
        lang: ``"cn"`` or ``"en"``.
        loc: Requested Locarno classes, possibly empty.
        apply_start_time: ``yyyyMMdd`` lower bound of the application dates, or None.
        apply_end_time: ``yyyyMMdd`` upper bound of the application dates, or None.
        statuses: Allowed ``comparisons[].status`` values (1 Valid, 2 Invalid, 3 Pending).
        patent_number: The patent of a 1-vs-1 (AI67) task, else None.
        publish_share: Share of images that each publication round hits (0..1).
        publish_round: How many publication rounds happened before the task was created.
    """

    image: str
    countries: tuple[str, ...]
    lang: str
    loc: tuple[str, ...] = ()
    apply_start_time: str | None = None
    apply_end_time: str | None = None
    statuses: tuple[int, ...] = (1, 2, 3)
    patent_number: str | None = None
    publish_share: float = 0.0
    publish_round: int = 0


def risk_level(score: float) -> str:
    """Return ``High`` for a score >= 0.8, ``Medium`` for >= 0.6, else ``Low``."""
    if score >= 0.8:
        return "High"
    if score >= 0.6:
        return "Medium"
    return "Low"


def _products_for(locs: tuple[str, ...]) -> tuple[tuple[str, str, str], ...]:
    """Return the products of the requested classes (exact, then by class), else neutral ones."""
    exact = tuple(p for p in _PRODUCTS if p[2] in locs)
    if exact:
        return exact
    classes = {loc[:2] for loc in locs}
    family = tuple(p for p in _PRODUCTS if p[2][:2] in classes)
    if family:
        return family
    return tuple((f"Design (LOC {loc})", f"外观设计（LOC {loc}）", loc) for loc in locs)


def _published(inputs: ReportInputs) -> list[int]:
    """Return the publication rounds (1-based) that hit this image."""
    hits = []
    for round_ in range(1, inputs.publish_round + 1):
        digest = hashlib.sha256(f"publish\n{inputs.image}\n{round_}".encode()).digest()
        if int.from_bytes(digest[:8], "big") / 2**64 < inputs.publish_share:
            hits.append(round_)
    return hits


def _parse_date(value: str | None, default: dt.date) -> dt.date:
    if value is None:
        return default
    return dt.date(int(value[:4]), int(value[4:6]), int(value[6:]))


def _date_int(day: dt.date) -> int:
    return day.year * 10000 + day.month * 100 + day.day


def _patent_numbers(rng: random.Random, country: str, year: int) -> tuple[str, str, str]:
    """Return (patent_pn, apno, img_id stem) in the country's usual format."""
    if country == "US":
        number = rng.randint(900_000, 1_099_999)
        return f"USD{number}S1", f"US29/{rng.randint(700_000, 999_999)}", f"USD{number}"
    if country == "CN":
        number = rng.randint(305_000_000, 309_999_999)
        return (
            f"CN{number}S",
            f"CN{year}3{rng.randint(0, 9_999_999):07d}.{rng.randint(0, 9)}",
            (f"{number:010d}"),
        )
    if country == "EU":
        number = rng.randint(1_000_000, 9_999_999)
        return f"EU00{number}0001S", f"EU00{number}", f"00{number:08d}"
    if country == "KR":
        number = rng.randint(1_000_000, 1_299_999)
        return (
            f"KR30{number}0000S",
            f"KR30-{year}-{rng.randint(0, 9_999_999):07d}",
            (f"30{number:08d}"),
        )
    if country == "AU":
        number = rng.randint(10_000, 99_999)
        return f"AU{year}{number}S", f"AU{year}{number}", f"{year}{number:06d}"
    number = rng.randint(1_000_000, 1_899_999)
    return (
        f"{country}{number}S",
        f"{country}{year}-{rng.randint(0, 999_999):06d}",
        (f"{number:010d}"),
    )


def _patent(
    rng: random.Random,
    inputs: ReportInputs,
    product: tuple[str, str, str],
    score: float,
    start: dt.date,
    end: dt.date,
    locs: tuple[str, ...],
    family: tuple[tuple[str, str, str], ...],
) -> dict[str, Any]:
    """Return one PatentInfo item (of the product's class when a LOC was requested)."""
    country = rng.choice(inputs.countries)
    applied = start + dt.timedelta(days=rng.randint(0, (end - start).days))
    published = applied + dt.timedelta(days=rng.randint(90, 540))
    pn, apno, stem = _patent_numbers(rng, country, applied.year)
    # Most neighbours are the same kind of product, a few are other products.
    title_en, title_cn, loc = product if rng.random() < 0.8 else rng.choice(family)
    suffix_en, suffix_cn = rng.choice(_TITLE_SUFFIXES)
    title = f"{title_cn}{suffix_cn}" if country == "CN" else f"{title_en}{suffix_en}"
    view = rng.randint(0, 6)
    img_id = f"{stem}-D{view:05d}_ABST" if country == "US" else f"{stem}{view:06d}"
    image_url = f"https://images.example/patent/{country}/{img_id}.png"
    assignee = rng.choice(_ASSIGNEES)
    return {
        "loc": [loc],
        "url": image_url,
        "url_120": image_url.replace(".png", "_120.png"),
        "apdt": _date_int(applied),
        "pbdt": _date_int(published),
        "apno": apno,
        "score": score,
        "title": title,
        "img_id": img_id,
        "inventor": ";".join(rng.sample(_NAMES, rng.randint(1, 3))),
        "authority": country,
        "loc_match": 1 if loc in locs else 0,
        "patent_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "patent_pn": pn,
        "risk_level": risk_level(score),
        "current_assignee": assignee,
        "original_assignee": assignee if rng.random() < 0.8 else rng.choice(_ASSIGNEES),
    }


def _texts(
    rng: random.Random,
    lang: str,
    product: tuple[str, str, str],
    level: str,
    country: str,
    status: int,
    score: float,
) -> dict[str, str]:
    """Return the LLM-written fields of one comparison."""
    part_en, part_cn = rng.choice(_PARTS)
    pct = round(score * 100)
    if lang == "cn":
        confusion = {
            "High": "一般消费者在施以一般注意力时容易将两者混淆。",
            "Medium": "一般消费者仔细观察可以区分，但仍存在一定混淆可能。",
            "Low": "两者整体视觉效果差异明显，一般消费者不易混淆。",
        }[level]
        suggestion = {
            "High": f"建议在{country}上市前进行规避设计，并咨询专业律师出具侵权分析意见。",
            "Medium": f"建议调整{part_cn}等局部设计以拉开差异，并持续关注该专利的法律状态。",
            "Low": "风险较低，可按计划推进，建议定期复查。",
        }[level]
        return {
            "similar": f"两者整体造型均为{product[1]}，轮廓比例与主要线条较为接近。",
            "difference": f"目标产品在{part_cn}处的设计与该专利不同。",
            "confusion": confusion,
            "risk_desc": (
                f"该专利在{country}处于{_STATUS_CN[status]}状态，与目标产品的相似度为{pct}%，"
                f"侵权风险{_LEVEL_CN[level]}。"
            ),
            "suggestion": suggestion,
        }
    confusion = {
        "High": "An ordinary observer would likely confuse the two designs.",
        "Medium": "A careful observer can tell them apart, but some confusion is possible.",
        "Low": "The overall impressions differ clearly; confusion is unlikely.",
    }[level]
    suggestion = {
        "High": f"Design around before launching in {country} and seek a legal opinion.",
        "Medium": f"Adjust the {part_en} to widen the difference and monitor the patent.",
        "Low": "Low risk: proceed as planned and re-check periodically.",
    }[level]
    return {
        "similar": f"Both are {product[0].lower()} designs with a close outline and proportions.",
        "difference": f"The {part_en} of the product differs from the patented design.",
        "confusion": confusion,
        "risk_desc": (
            f"The patent is {_STATUS_EN[status]} in {country}; similarity {pct}%, "
            f"{level.lower()} infringement risk."
        ),
        "suggestion": suggestion,
    }


def _png(rng: random.Random, size: int = 16) -> bytes:
    """Return a tiny grayscale PNG with a few black lines on white."""
    pixels = [[255] * size for _ in range(size)]
    for _ in range(3):
        if rng.random() < 0.5:
            row = rng.randrange(size)
            pixels[row] = [0] * size
        else:
            col = rng.randrange(size)
            for line in pixels:
                line[col] = 0
    raw = b"".join(b"\x00" + bytes(line) for line in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _rerank(rng: random.Random, score: float) -> float:
    """Return a rerank score on the 0..100 scale, near ``100 * score``."""
    return max(0.0, min(100.0, round(100 * score + rng.gauss(0, 8), 1)))


def _fuse(patents: list[dict[str, Any]], rerank: list[float]) -> list[dict[str, Any]]:
    """Return the RRF-fused items (``patents`` is in traditional order), best first."""
    order = sorted(range(len(patents)), key=lambda i: (-rerank[i], i))
    rerank_rank = {index: rank for rank, index in enumerate(order, start=1)}
    fused = []
    for index, patent in enumerate(patents):
        rr, tr = rerank_rank[index], index + 1
        fused.append(
            {
                **patent,
                "rrf_score": 1 / (K_VALUE + rr) + 1 / (K_VALUE + tr),
                "rerank_rank": rr,
                "rerank_score": rerank[index],
                "traditional_rank": tr,
                "traditional_score": patent["score"],
            }
        )
    fused.sort(key=lambda item: (-item["rrf_score"], item["traditional_rank"]))
    return fused


@functools.lru_cache(maxsize=2048)
def build_result(inputs: ReportInputs) -> dict[str, Any]:
    """Build the report fields of a successful task (cached: never mutate the result).

    Args:
        inputs: What the report depends on.

    Returns:
        ``line_drawing_base64``, ``patent_messages``, ``rrffusion_response`` and ``report``
        (whose ``operate_date`` is 0: the caller sets the real one on a copy).
    """
    seed = hashlib.sha256(
        f"{inputs.image}\n{','.join(inputs.countries)}\n{inputs.lang}".encode()
    ).digest()
    rng = random.Random(seed)
    family = _products_for(inputs.loc) if inputs.loc else _PRODUCTS
    product = rng.choice(family)
    locs = inputs.loc or (product[2],)
    if not inputs.loc:  # the platform searched every class: neighbours mostly share this one
        family = tuple(p for p in _PRODUCTS if p[2][:2] == product[2][:2]) + _PRODUCTS[:3]
    start = _parse_date(inputs.apply_start_time, _DEFAULT_START)
    end = _parse_date(inputs.apply_end_time, _DEFAULT_END)
    if end < start:
        end = start + dt.timedelta(days=180)
    risk = rng.random()
    top = 0.5 + 0.48 * risk
    count = rng.randint(10, 30)
    scores = sorted(
        (max(0.05, min(0.999, top * (1 - 0.025 * i) - rng.uniform(0, 0.02))) for i in range(count)),
        reverse=True,
    )
    base = [_patent(rng, inputs, product, s, start, end, locs, family) for s in scores]
    base_rerank = [_rerank(rng, p["score"]) for p in base]
    shown = {p["patent_pn"] for p in _fuse(base, base_rerank)[: rng.randint(0, 8)]}
    fresh: list[dict[str, Any]] = []
    fresh_rerank: list[float] = []
    published: set[str] = set()
    for round_ in reversed(_published(inputs)):
        news = random.Random(hashlib.sha256(f"new\n{inputs.image}\n{round_}".encode()).digest())
        for _ in range(news.randint(1, 2)):
            score = round(news.uniform(0.82, 0.97), 4)
            fresh.append(_patent(news, inputs, product, score, start, end, locs, family))
            fresh_rerank.append(_rerank(news, score))
            published.add(fresh[-1]["patent_pn"])
    patents = fresh + base
    count = len(patents)
    fused = _fuse(patents, fresh_rerank + base_rerank)
    comparisons = []
    shown |= published
    for item in (f for f in fused if f["patent_pn"] in shown):
        # Each comparison draws from its own generator, so a publication changes nothing else.
        own = random.Random(seed + item["patent_pn"].encode())
        level = risk_level(item["score"])
        mix = (1, 1, 3) if item["patent_pn"] in published else (1, 1, 1, 3, 2)  # new: live
        status = own.choice([s for s in mix if s in inputs.statuses] or [1])
        comparisons.append(
            {
                "score": item["score"],
                "title": item["title"],
                "img_id": item["img_id"],
                "status": status,
                "country": item["authority"],
                "patent_id": item["patent_id"],
                "patent_pn": item["patent_pn"],
                "risk_level": level,
                **_texts(
                    own, inputs.lang, product, level, item["authority"], status, item["score"]
                ),
            }
        )
    high = [
        c
        for c in inputs.countries
        if any(x["country"] == c and x["risk_level"] == "High" for x in comparisons)
    ]
    middle = [
        c
        for c in inputs.countries
        if any(x["country"] == c and x["risk_level"] == "Medium" for x in comparisons)
    ]
    suspected = [c for c in inputs.countries if c in high or c in middle]
    report: dict[str, Any] = {
        "loc": list(locs),
        "country": list(inputs.countries),
        "comparisons": comparisons,
        "operate_date": 0,
        "high_risk_country": high,
        "middle_risk_country": middle,
        "suspected_infringement_count": sum(c["risk_level"] != "Low" for c in comparisons),
        "suspected_infringement_country": suspected,
    }
    if inputs.apply_start_time is not None:
        report["apply_start_time"] = inputs.apply_start_time
    return {
        "line_drawing_base64": "data:image/png;base64," + base64.b64encode(_png(rng)).decode(),
        "patent_messages": {
            "patent_messages": patents,
            "total_search_result_count": count + rng.randint(0, 400),
        },
        "rrffusion_response": {
            "k_value": K_VALUE,
            "rerank_count": count,
            "traditional_count": count,
            "patent_messages": fused,
        },
        "report": report,
    }


@functools.lru_cache(maxsize=2048)
def build_1v1_result(inputs: ReportInputs) -> dict[str, Any]:
    """Build the ``data`` fields of a finished 1-vs-1 (AI67) task (cached: never mutate).

    The report compares the image with the requested patent only: one comparison whose
    ``patent_pn`` is ``inputs.patent_number`` and whose country is its first two letters.
    Seeded from sha256 of the image and the patent, so it is deterministic. Its ``score``
    is sent on a 0..1 scale for some inputs and on 0..100 for others (the platform's
    examples show both, reference §5.2); ``risk_level`` follows the 0..1 value as in
    :func:`risk_level`.

    Args:
        inputs: The image identity, the report language and ``patent_number``.

    Returns:
        ``loc``, ``country``, ``user_image``, ``comparisons``, the risk country lists and
        ``suspected_infringement_count``.
    """
    patent = inputs.patent_number or ""
    digest = hashlib.sha256(f"1v1\n{inputs.image}\n{patent}\n{inputs.lang}".encode()).digest()
    rng = random.Random(digest)
    product = rng.choice(_PRODUCTS)
    country = patent[:2] if len(patent) >= 2 and patent[:2].isalpha() else "US"
    score = round(rng.uniform(0.3, 0.99), 3)
    level = risk_level(score)
    status = rng.choice((1, 1, 1, 3, 2))
    title_en, title_cn, loc = product
    wire_score = round(score * 100, 1) if digest[0] % 2 else score
    comparison = {
        "score": wire_score,
        "title": title_cn if inputs.lang == "cn" else title_en,
        "status": status,
        "country": country,
        "patent_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "patent_pn": patent,
        "risk_level": level,
        "patent_image_url": f"https://data-abstract-image.zhihuiya.com/{country}/S/{patent}.png",
        **_texts(rng, inputs.lang, product, level, country, status, score),
    }
    return {
        "loc": [loc],
        "country": [country],
        "user_image": inputs.image,
        "comparisons": [comparison],
        "high_risk_country": [country] if level == "High" else [],
        "middle_risk_country": [country] if level == "Medium" else [],
        "suspected_infringement_count": int(level != "Low"),
        "suspected_infringement_country": [country] if level != "Low" else [],
    }
