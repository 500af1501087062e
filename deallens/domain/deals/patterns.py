"""Deal facts from headlines by deterministic patterns: the path without an LLM.

Headlines of M&A news follow a handful of shapes ("X to acquire Y for $N billion", "X agrees
to buy Y", "X completes acquisition of Y", "X calls off bid for Y", "regulators sue to block
X's deal for Y", "X in talks to acquire Y", "X launches tender offer for Y", "Y rejects X's
bid", "Y shareholders approve sale to X"). Each rule below is one shape, with the status it
reports; the first rule whose parties look like company names wins. The title is tried
first, then the description's sentences. Value, currency, price per share, consideration and
the expected closing come from title and description together.

Status rules (the labelling rules of tests/labelled/deals_headlines.jsonl follow them):
- rumored: talks, approaches, considerations, and bids or offers not (yet) agreed, including
  rejected ones; also an agreement headline attributed to anonymous sources or a report;
- announced: a definitive agreement, or a tender/exchange offer launched to shareholders;
- pending_regulatory: a regulator reviews, probes, challenges, sues to block or blocks the
  deal (a block can be appealed: the deal is terminated when its parties give up);
- approved: a regulator or the shareholders approve or clear it;
- completed: the deal closed; terminated: a party called it off, or it collapsed.

Article text is untrusted: these are plain regular expressions over it, and what they
return is bounded data (two names, a status from a closed set, numbers with plausibility
limits), so no wording can make them do anything else.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from deallens.domain.deals.facts import MAX_DEAL_VALUE, MAX_PRICE_PER_SHARE, Consideration, DealFacts
from deallens.domain.deals.parties import clean_name, one_line
from deallens.domain.deals.status import DealStatus

SOURCE = "patterns"  # DealFacts.source and deal_article_checks.extractor of this path
# Longer inputs are cut: a headline pattern has nothing to find in a 10 MB body. The rules see
# one sentence of at most SENTENCE_MAX characters (headlines run under 150), which also bounds
# what a crafted text can cost them (backtracking grows with the length).
TEXT_MAX = 2_000
SENTENCE_MAX = 300

# Words that make an article worth examining at all (word starts, case-insensitive). Kept
# broad: the rules decide; this only spares them the articles that cannot be deal news.
RELEVANCE_TERMS = (
    "acqui", "merge", "merger", "takeover", "take over", "buyout", "buy", "bought", "purchase", "bid", "offer",
    "tender", "deal", "talks", "combine", "combination", "sale", "sell", "block", "antitrust", "stake",
)
RELEVANT = re.compile(r"\b(?:" + "|".join(re.escape(t) for t in RELEVANCE_TERMS) + r")", re.I)
# The same test in PostgreSQL's regex dialect (\m = word start), for the database prefilter.
RELEVANT_SQL = r"\m(" + "|".join(re.escape(t).replace(r"\ ", " ") for t in RELEVANCE_TERMS) + ")"

# ------------------------------------------------------------------ building blocks

_SCALE = r"(?:trillion|tn|billion|bln|bn|b|million|mln|mn|m)"
_CUR_PREFIX = r"(?:US\$|U\.S\.\s?\$|C\$|CA\$|A\$|AU\$|HK\$|\$|€|£|¥|(?:USD|EUR|GBP|JPY|CAD|AUD|CHF|CNY|HKD|INR|SEK|KRW)\s?)"
_CUR_WORD = r"(?:dollars?|euros?|pounds?(?:\s+sterling)?|sterling|yen|swiss\s+francs?|francs?|yuan|renminbi|rupees?|kronor|won)"
_NUMBER = r"\d[\d,]*(?:\.\d+)?"
MONEY = (
    rf"(?:{_CUR_PREFIX}\s?{_NUMBER}(?:\s*-?\s*{_SCALE}\b)?(?:\s+{_CUR_WORD})?"
    rf"|{_NUMBER}\s*-?\s*{_SCALE}\s+{_CUR_WORD}|{_NUMBER}\s+{_CUR_WORD})"
)
_MONEY_RE = re.compile(
    rf"(?P<prefix>{_CUR_PREFIX})?\s?(?P<number>{_NUMBER})(?:\s*-?\s*(?P<scale>{_SCALE})\b)?(?:\s+(?P<word>{_CUR_WORD}))?",
    re.I,
)
_ADJ_WORDS = (
    r"its|a|an|the|their|proposed|planned|pending|potential|possible|hostile|unsolicited|rival|revised|sweetened|"
    r"improved|higher|new|fresh|formal|friendly|agreed|blockbuster|mega|megamerger|multibillion-dollar|"
    r"billion-dollar|all-cash|all-stock|all-share|cash-and-stock|cash-and-share|stock-and-cash|cash|stock|"
    r"takeover|buyout|merger|\d+(?:\.\d+)?-?(?:billion|million|bln|bn)(?:-dollar|-euro|-pound)?"
)
ADJ = rf"(?:(?:{_ADJ_WORDS}|{MONEY})\s+)*"
NOUN = (
    r"(?:acquisition|purchase|takeover(?:\s+(?:bid|offer|approach|attempt))?|buyout(?:\s+(?:bid|offer))?|merger|"
    r"tie-up|deal|bid|offer|tender\s+offer|exchange\s+offer|sale|combination|pursuit|approach|proposal|"
    r"agreement|transaction)"
)
# Where a party's name ends: punctuation, a dash, or the words that follow names in headlines.
_END = (
    r"(?=\s*$|\s*[,;:(\[|?!]|\s+[-–—]\s|\s+(?:for|in|at|valued|worth|amid|after|as|to|with|on|from|over|despite|"
    r"following|while|because|ahead|before|says?|said|report|reports|sources?|deal|merger|bid|offer|takeover|"
    r"acquisition|purchase|buyout|sale|talks|faces?|collapses?|shares|stock|plunges?|soars?|jumps?|surges?|"
    r"falls?|slumps?|rallies|rises?|climbs?|tumbles?|sinks?|by|and|under|that|which|including|plus|via|"
    r"cash|stock|all-cash|all-stock|unit|business|assets|amid)\b)"
)
A = r"(?P<a>[^,;:|?!]+?)"
T = rf"(?P<t>[^,;:|?!]+?){_END}"
T_BEFORE_NOUN = rf"(?P<t>[^,;:|?!]+?)\s+{NOUN}\b"
POSS = r"(?:['’]s|['’])"
REG = (
    r"(?:(?:the\s+)?(?:U\.?S\.?|US|EU|E\.U\.|UK|U\.K\.|European|British|Chinese|China['’]s|Japanese|Brazilian|"
    r"Canadian|Australian|Indian|Korean|federal|state|antitrust|competition|top|Biden|Trump)\s+)*"
    r"(?:[A-Z][\w.]*['’]s\s+)?"
    r"(?:regulators?|EU|E\.U\.|UK|U\.K\.|Britain|China|Japan|FTC|DOJ|Justice\s+Department|Department\s+of\s+Justice|European\s+Commission|Commission|EC|"
    r"CMA|Competition\s+and\s+Markets\s+Authority|Competition\s+Bureau|SAMR|ACCC|CADE|watchdogs?|antitrust\s+"
    r"(?:enforcers?|agency|agencies|authorities)|enforcers?|authorities|officials|government|judge|court|"
    r"Brussels|Washington|Beijing|Federal\s+Trade\s+Commission|CFIUS|Ofcom|FCC|Fed|Federal\s+Reserve|states|"
    r"attorneys\s+general)"
)
_PRE = r"(?:(?:is|are)\s+)?(?:(?:said\s+to\s+be|reportedly|reported\s+to\s+be|now|also|again|finally|officially)\s+)?"

# Deal phrases inside a sentence about the deal ("Microsoft's $69 billion acquisition of
# Activision", "the merger of X and Y", "the purchase of Y by X"): each with groups a and t.
_DEAL_PHRASES = (
    rf"{A}{POSS}\s+{ADJ}{NOUN}\s+(?:for|of|with|to\s+(?:buy|acquire|merge\s+with))\s+{ADJ}{T}",
    rf"{A}{POSS}\s+{ADJ}{T_BEFORE_NOUN}",
    rf"(?:the\s+)?{ADJ}(?:acquisition|purchase|takeover|buyout)\s+of\s+(?P<t>[^,;:|?!]+?)\s+by\s+(?P<a>[^,;:|?!]+?){_END}",
    rf"(?:the\s+)?{ADJ}(?:merger|combination|deal|tie-up)\s+(?:of|between)\s+{A}\s+(?:and|with)\s+{T}",
    rf"(?:the\s+)?{ADJ}{A}\s*[-–/]\s*(?P<t>[^,;:|?!\s][^,;:|?!]*?)\s+(?:merger|deal|tie-up|combination|takeover|transaction)\b",
    rf"{A}\s+(?:deal|bid|offer|takeover|acquisition|purchase)\s+(?:for|of)\s+{T}",
)

_BLOCK = r"(?:blocks?|blocked|sues?\s+to\s+block|sued\s+to\s+block|moves?\s+to\s+block|moved\s+to\s+block|seeks?\s+to\s+block|sought\s+to\s+block|challenges?|challenged|vows?\s+to\s+block|files?\s+suit\s+to\s+block|opposes?|opposed|objects?\s+to|prohibits?|prohibited|rejects?|rejected|vetoes|vetoed)"
_PROBE = r"(?:opens?|opened|launches?|launched|begins?|began|starts?|started|deepens?|deepened|extends?|extended|widens?|widened|announces?|orders?|ordered|steps\s+up)\s+(?:an?\s+|its\s+)?(?:in-depth\s+|full-scale\s+|formal\s+|antitrust\s+|full\s+|second\s+|deeper\s+|phase\s+(?:2|two|ii)\s+|competition\s+)*(?:probe|investigation|review|inquiry|scrutiny)\s+(?:into|of|on)"
_PROBE_NOUN = r"(?:probes?|investigates?|investigating|reviews?|reviewing|scrutinizes?|scrutinises?|examines?|eyes|questions?)"
_APPROVE = r"(?:approves?|approved|clears?|cleared|OKs?|OK['’]?d|okays?|okayed|greenlights?|green-lights?|greenlit|blesses|blessed|signs?\s+off\s+on|signed\s+off\s+on|backs?|backed|endorses?|endorsed|votes?\s+(?:for|to\s+approve|in\s+favou?r\s+of)|voted\s+(?:for|to\s+approve|in\s+favou?r\s+of)|allows?|allowed|gives?\s+(?:the\s+)?(?:green\s+light|nod|go-ahead)\s+to|gave\s+(?:the\s+)?(?:green\s+light|nod|go-ahead)\s+to)"
_HOLDERS = r"(?:(?:the\s+)?(?:[A-Z][\w&.'’-]*\s+){0,4}(?:shareholders|stockholders|investors|holders|board))"
_TERMINATE = r"(?:calls?\s+off|called\s+off|calling\s+off|abandons?|abandoned|drops?|dropped|scraps?|scrapped|terminates?|terminated|walks?\s+away\s+from|walked\s+away\s+from|withdraws?|withdrew|ends?|ended|pulls?\s+out\s+of|pulled\s+out\s+of|pulls?|pulled|kills?|killed|cancels?|cancel(?:l)?ed|gives?\s+up(?:\s+on)?|gave\s+up(?:\s+on)?|backs?\s+out\s+of|backed\s+out\s+of|ditches|ditched|shelves|shelved|axes|axed)"
_COMPLETE = r"(?:completes?|completed|closes?|closed|finalizes?|finalized|finalises?|finalised|wraps?\s+up|wrapped\s+up|seals?|sealed|concludes?|concluded)"
_AGREE = (
    r"(?:to|will|would|agrees?\s+to|agreed\s+to|has\s+agreed\s+to|set\s+to|is\s+set\s+to|plans?\s+to|"
    r"signs?\s+(?:a\s+)?(?:deal|agreement|definitive\s+agreement)\s+to|signed\s+(?:a\s+)?(?:deal|agreement)\s+to|"
    r"strikes?\s+(?:a\s+)?deal\s+to|struck\s+(?:a\s+)?deal\s+to|reaches?\s+(?:a\s+)?(?:deal|agreement)\s+to|"
    r"reached\s+(?:a\s+)?(?:deal|agreement)\s+to|inks?\s+(?:a\s+)?deal\s+to|announces?\s+(?:plans?|a\s+deal|"
    r"deal|agreement|an\s+agreement)\s+to|announced\s+(?:plans?|a\s+deal|deal|agreement)\s+to|unveils?\s+"
    r"(?:a\s+)?(?:plan|deal)\s+to|moves?\s+to|clinches?\s+(?:a\s+)?deal\s+to|wins?\s+(?:bidding\s+war|"
    r"auction)\s+(?:to|for))"
)
_BUY = r"(?:acquire|buy|purchase|take\s+over|snap\s+up|scoop\s+up|merge\s+with|combine\s+with|absorb|swallow)"
_BUYS = r"(?:acquires|buys|purchases|snaps\s+up|scoops\s+up|takes\s+over|swallows|nabs|absorbs|picks\s+up|merges\s+with|combines\s+with)"
_TALKS = (
    r"(?:is\s+|are\s+)?(?:said\s+to\s+be\s+|reportedly\s+|reported\s+to\s+be\s+)?"
    r"(?:in|enters?|entered|entering|holds?|held|holding|opens?|opened|begins?|began|resumes?|resumed|"
    r"revives?|revived|restarts?|explores?|explored|exploring|conducts?)\s+"
    r"(?:advanced\s+|early\s+|exclusive\s+|preliminary\s+|late-stage\s+|final\s+|serious\s+|formal\s+|fresh\s+|"
    r"new\s+|early-stage\s+|informal\s+|secret\s+|confidential\s+|talks\s+|merger\s+|takeover\s+|buyout\s+|"
    r"acquisition\s+|deal\s+|sale\s+)*(?:stages?\s+of\s+)?(?:talks|discussions|negotiations)"
)
_CONSIDER = (
    r"(?:explores?|exploring|explored|weighs?|weighing|weighed|considers?|considering|considered|eyes|eyeing|"
    r"eyed|mulls?|mulling|mulled|studies|studying|prepares?|preparing|plots?|plotting|readies|readying|"
    r"pursues?|pursuing|approaches?|approached|makes?|made|submits?|submitted|offers?|offered|raises?|raised|"
    r"sweetens?|sweetened|ups|upped|boosts?|boosted|lifts?|lifted|renews?|renewed|launches?|launched|"
    r"tables?|tabled|lodges?|lodged|puts?\s+in|put\s+in|floats?|floated|nears?|nearing|neared|closes?\s+in\s+on|"
    r"is\s+close\s+to|close\s+to|is\s+nearing|seeks?|seeking|wants?|plans?)"
)
# Not a takeover: "buys back shares", "buys more Apple shares", "buys a stake in".
_NOT_CONTROL = (
    r"(?!(?:back|more|additional|further|shares|stock|stocks|some|its\s+own|bonds|debt|assets|rights|"
    r"(?:a\s+)?(?:minority\s+|small\s+|\d+(?:\.\d+)?%\s+|passive\s+|strategic\s+|new\s+)?stakes?)\b)"
)
_TENDER = r"(?:launches?|launched|commences?|commenced|begins?|began|starts?|started|files?|filed|extends?|extended|completes?\s+launch\s+of)"


@dataclass(frozen=True, slots=True)
class _Rule:
    name: str
    status: DealStatus
    regex: re.Pattern[str]  # groups a (acquirer) and t (target), in whatever order the shape names them


def _rule(name: str, status: DealStatus, pattern: str) -> _Rule:
    return _Rule(name, status, re.compile(r"^\s*" + pattern, re.I))


def _phrase_rules(name: str, status: DealStatus, lead: str) -> list[_Rule]:
    """A rule per deal phrase after `lead` ("regulators sue to block <phrase>")."""
    return [_rule(f"{name}/{i}", status, lead + r"\s+" + phrase) for i, phrase in enumerate(_DEAL_PHRASES)]


def _subject_phrase_rules(name: str, status: DealStatus, tail: str) -> list[_Rule]:
    """A rule per deal phrase before `tail` ("<phrase> faces EU probe")."""
    return [_rule(f"{name}/{i}", status, phrase.replace(_END, "") + r"\s+" + tail) for i, phrase in enumerate(_DEAL_PHRASES)]


RULES: tuple[_Rule, ...] = (
    # terminated
    _rule("call_off", "terminated",
          rf"{A}\s+{_PRE}{_TERMINATE}\s+{ADJ}(?:{NOUN}|plan|plans|attempt|talks|pursuit)(?:\s+(?:plan|talks|attempt|agreement))?\s+"
          rf"(?:for|of|with|to\s+(?:buy|acquire|merge\s+with|take\s+over))\s+{ADJ}{T}"),
    _rule("call_off_named", "terminated", rf"{A}\s+{_PRE}{_TERMINATE}\s+{ADJ}{T_BEFORE_NOUN}"),
    _rule("both_call_off", "terminated",
          rf"{A}\s+and\s+(?P<t>[^,;:|?!]+?)\s+{_PRE}{_TERMINATE}\s+{ADJ}(?:merger|deal|talks|combination|tie-up|agreement|plans?)"),
    *_subject_phrase_rules("collapses", "terminated",
                           r"(?:collapses?|collapsed|falls?\s+(?:apart|through)|fell\s+(?:apart|through)|fails?|failed|"
                           r"is\s+(?:off|dead|terminated|scrapped|called\s+off|abandoned)|dies|died|unravels?|unraveled)"),
    # pending_regulatory
    *_phrase_rules("regulator_block", "pending_regulatory", rf"{REG}\s+(?:{_PRE}){_BLOCK}"),
    *_phrase_rules("regulator_probe", "pending_regulatory", rf"{REG}\s+(?:{_PRE})(?:{_PROBE}|{_PROBE_NOUN})"),
    *_phrase_rules("block_plain", "pending_regulatory",
                   r"(?:.*?\b)?(?:blocks?|blocked|(?:sues?|sued|moves?|moved|seeks?|sought|vows?|vowed|bids?)\s+to\s+block)"),
    *_subject_phrase_rules("faces_probe", "pending_regulatory",
                           r"(?:faces?|draws?|drew|hit\s+by|hits?|gets?|under|meets?|runs?\s+into|attracts?)\s+(?:an?\s+)?"
                           r"(?:\w+\s+){0,3}(?:probe|scrutiny|review|investigation|challenge|lawsuit|opposition|hurdle|objections?|pushback)"),
    # approved
    *_phrase_rules("regulator_approve", "approved", rf"{REG}\s+(?:{_PRE})(?:conditionally\s+|unconditionally\s+)?{_APPROVE}"),
    _rule("holders_approve_sale", "approved",
          rf"(?P<t>[^,;:|?!]+?)\s+(?:shareholders|stockholders|investors|holders|board)\s+{_APPROVE}\s+{ADJ}"
          rf"(?:sale|merger|deal|takeover|buyout)\s+(?:to|with|by)\s+{A}{_END}"),
    _rule("holders_approve_bid", "approved",
          rf"(?P<t>[^,;:|?!]+?)\s+(?:shareholders|stockholders|investors|holders)\s+{_PRE}{_APPROVE}\s+{A}{POSS}?\s+{ADJ}"
          rf"(?:bid|offer|deal|takeover(?:\s+(?:bid|offer))?|buyout(?:\s+offer)?|merger|acquisition|proposal)\b"),
    *_phrase_rules("holders_approve", "approved", rf"{_HOLDERS}\s+(?:{_PRE}){_APPROVE}"),
    *(
        _rule(f"wins_approval/{i}", "approved",
              rf"{A}\s+(?:wins?|won|gets?|got|receives?|received|secures?|secured|obtains?|obtained|clinches?)\s+"
              rf"(?:\w+\s+){{0,3}}(?:approval|clearance|nod|go-ahead|green\s+light|backing|blessing)s?\s+(?:for|of|to)\s+"
              rf"{ADJ}{tail}")
        for i, tail in enumerate((rf"{NOUN}\s+(?:of|for|with|to\s+(?:buy|acquire))\s+{ADJ}{T}", T_BEFORE_NOUN))
    ),
    _rule("deal_approved", "approved",
          rf"{A}{POSS}\s+{ADJ}{NOUN}\s+(?:for|of|with)\s+(?P<t>[^,;:|?!]+?)\s+(?:wins?|won|gets?|got|receives?|secures?)\s+"
          rf"(?:\w+\s+){{0,3}}(?:approval|clearance|nod|go-ahead|green\s+light)"),
    # completed
    _rule("complete", "completed",
          rf"{A}\s+{_PRE}{_COMPLETE}\s+{ADJ}{NOUN}\s+(?:of|for|with|to\s+(?:buy|acquire))\s+{ADJ}{T}"),
    _rule("complete_named", "completed", rf"{A}\s+{_PRE}{_COMPLETE}\s+{ADJ}{T_BEFORE_NOUN}"),
    _rule("both_complete", "completed",
          rf"{A}\s+and\s+(?P<t>[^,;:|?!]+?)\s+{_PRE}{_COMPLETE}\s+{ADJ}(?:merger|deal|combination|tie-up|transaction)"),
    # rumored before announced: "in talks to acquire" contains "to acquire".
    _rule("talks_to_buy", "rumored", rf"{A}\s+{_TALKS}\s+(?:to|over|about|on)\s+(?:a\s+)?(?:possible\s+|potential\s+)?(?:{_BUY}|(?:deal|bid|takeover|merger|acquisition)\s+(?:for|of|with))\s+{ADJ}{T}"),
    _rule("talks_with", "rumored", rf"{A}\s+{_TALKS}\s+with\s+{T}"),
    _rule("both_talks", "rumored",
          rf"{A}\s+and\s+(?P<t>[^,;:|?!]+?)\s+{_TALKS}"),
    _rule("both_talks_merge", "rumored",
          rf"{A}\s+and\s+(?P<t>[^,;:|?!]+?)\s+(?:are\s+)?(?:in|hold|held|enter|explore|explored|discuss|discussed|weigh|weighing|consider|considering|mull)\s+(?:a\s+)?(?:possible\s+|potential\s+)?(?:merger|combination|tie-up|deal)"),
    _rule("consider_bid", "rumored",
          rf"{A}\s+{_PRE}{_CONSIDER}\s+{ADJ}(?:bid|offer|acquisition|takeover(?:\s+(?:bid|offer|approach))?|deal|approach|proposal|"
          rf"buyout(?:\s+offer)?|merger|move|swoop|counterbid|counteroffer|sale)\s+(?:for|of|on|to\s+(?:buy|acquire|take\s+over|merge\s+with)|with)\s+{ADJ}{T}"),
    _rule("consider_buy", "rumored",
          rf"{A}\s+{_PRE}(?:explores?|exploring|weighs?|weighing|considers?|considering|mulls?|mulling|eyes|eyeing|is\s+interested\s+in|"
          rf"interested\s+in|looks?\s+to|looking\s+to|seeks?\s+to|seeking\s+to|hopes?\s+to|aims?\s+to|wants?\s+to|"
          rf"studies|studying|prepares?\s+to|preparing\s+to|plots?|plotting)\s+(?:a\s+)?(?:possible\s+|potential\s+)?"
          rf"(?:bid\s+to\s+|move\s+to\s+|deal\s+to\s+|plan\s+to\s+|options\s+to\s+)?"
          rf"(?:acquiring|buying|acquire|buy|purchase|purchasing|take\s+over|taking\s+over|merging\s+with|merge\s+with|combining\s+with)\s+{ADJ}{T}"),
    _rule("approach", "rumored",
          rf"{A}\s+{_PRE}(?:approaches?|approached|courts?|courted|woos|wooed|targets?|targeted|eyes|eyeing|circles?|circling|stalks?)\s+"
          rf"(?P<t>[^,;:|?!]+?)\s+(?:about|over|for|with|on|in|as)\s+(?:a\s+|possible\s+|potential\s+)*(?:takeover|deal|merger|acquisition|bid|offer|buyout|tie-up|combination|target)"),
    _rule("rejects_bid", "rumored",
          rf"(?P<t>[^,;:|?!]+?)(?:\s+(?:board|shareholders|stockholders|investors|directors))?\s+{_PRE}(?:rejects?|rejected|rebuffs?|rebuffed|spurns?|spurned|snubs?|snubbed|turns?\s+down|turned\s+down|"
          rf"dismisses?|dismissed|shuns?|shunned|rebuts?|weighs?|weighing|considers?|considering|reviews?|reviewing|evaluates?|evaluating|"
          rf"receives?|received|gets?|got)\s+{A}{POSS}\s+{ADJ}(?:bid|offer|approach|proposal|overture|takeover(?:\s+(?:bid|offer|approach|proposal))?|buyout(?:\s+(?:bid|offer|proposal))?)"),
    _rule("receives_bid", "rumored",
          rf"(?P<t>[^,;:|?!]+?)\s+{_PRE}(?:receives?|received|gets?|got|rejects?|rejected|rebuffs?|rebuffed|spurns?|spurned|weighs?|considers?)\s+{ADJ}"
          rf"(?:bid|offer|approach|proposal|overture|takeover(?:\s+(?:bid|offer|approach|proposal))?|buyout(?:\s+(?:bid|offer|proposal))?|interest)\s+from\s+{A}{_END}"),
    _rule("nears_deal", "rumored",
          rf"{A}\s+{_PRE}(?:nears?|nearing|neared|closes?\s+in\s+on|is\s+close\s+to|close\s+to|is\s+nearing)\s+{ADJ}(?:deal|agreement|pact)\s+"
          rf"(?:to\s+(?:buy|acquire|purchase|merge\s+with|take\s+over|combine\s+with)|for|with)\s+{ADJ}{T}"),
    # announced
    _rule("tender_offer", "announced",
          rf"{A}\s+{_PRE}{_TENDER}\s+{ADJ}(?:tender|exchange)\s+offer\s+(?:for|to\s+(?:buy|acquire))\s+{ADJ}(?:(?:all|remaining)\s+(?:outstanding\s+)?shares\s+(?:of|in)\s+)?{T}"),
    _rule("agree_to_buy", "announced",
          rf"{A}\s+{_PRE}{_AGREE}\s+{_BUY}\s+{_NOT_CONTROL}{ADJ}(?:(?:a\s+)?(?:majority|controlling)\s+stake\s+in\s+|(?:all\s+of|rest\s+of|remainder\s+of)\s+)?{T}"),
    _rule("buys", "announced",
          rf"{A}\s+{_PRE}{_BUYS}\s+{_NOT_CONTROL}{ADJ}(?:(?:a\s+)?(?:majority|controlling)\s+stake\s+in\s+|(?:all\s+of|rest\s+of|remainder\s+of)\s+)?{T}"),
    _rule("both_merge", "announced",
          rf"{A}\s+and\s+(?P<t>[^,;:|?!]+?)\s+{_PRE}(?:to|will|agree\s+to|agreed\s+to|announce|announced|unveil|unveiled|seal|sealed|strike|struck|sign|signed|reach|reached|plan\s+to|set)\s+"
          rf"{ADJ}(?:merge|combine|merger|combination|tie-up|deal|agreement)"),
    _rule("to_be_acquired", "announced",
          rf"(?P<t>[^,;:|?!]+?)\s+{_PRE}(?:agrees?\s+to\s+be|agreed\s+to\s+be|to\s+be|will\s+be|is\s+being|set\s+to\s+be|is\s+to\s+be|being)\s+"
          rf"(?:acquired|bought|taken\s+over|purchased|sold|swallowed|absorbed)\s+(?:by|to)\s+{A}{_END}"),
    _rule("sells_itself", "announced",
          rf"(?P<t>[^,;:|?!]+?)\s+{_PRE}(?:agrees?\s+to|agreed\s+to|to|will)\s+(?:sell\s+itself|be\s+sold|merge|combine)\s+(?:to|with)\s+{A}{_END}"),
    _rule("accepts_bid", "announced",
          rf"(?P<t>[^,;:|?!]+?)\s+{_PRE}(?:accepts?|accepted|agrees?\s+to|agreed\s+to|backs?|backed|endorses?|endorsed|embraces?|embraced|recommends?|recommended)\s+"
          rf"{A}{POSS}\s+{ADJ}(?:bid|offer|takeover(?:\s+(?:bid|offer))?|buyout(?:\s+offer)?|proposal|deal)"),
    _rule("sale_to", "announced",
          rf"(?P<t>[^,;:|?!]+?)\s+{_PRE}(?:agrees?\s+to|agreed\s+to|to|will|announces?|announced|sets?)\s+{ADJ}sale\s+to\s+{A}{_END}"),
)

# Headline furniture around the sentence: "Exclusive:", "UPDATE 2-", "- Reuters".
_LEADING = re.compile(
    r"^\s*(?:(?:exclusive|breaking(?:\s+news)?|update\s*\d*|corrected|refile|wrapup\s*\d*|analysis|deals?|m&a|"
    r"report|factbox|explainer|brief|urgent|live|market\s+wrap|insight|premarket|stocks?)\s*[-:–—|]\s*)+",
    re.I,
)
_TRAILING = re.compile(
    r"(?:\s*[-–—|:]\s*(?:reuters|bloomberg(?:\s+news)?|wsj|ft|cnbc|the\s+information|axios|dealbook|"
    r"sources?|report|media|source)\s*$|\s*\((?:report|reuters|bloomberg|updated)\)\s*$)",
    re.I,
)
# Attributed to anonymous sources or a report: an agreement is then still a rumour.
_SOURCED = re.compile(
    r"\b(?:sources?\s+(?:say|said|tell|told)|people\s+familiar|according\s+to\s+(?:people|sources|a\s+report|reports)|"
    r"reportedly|report\s+says|reports?\s+say|(?:wsj|ft|bloomberg|cnbc|reuters)\s+reports?|-\s*sources?\s*$|"
    r"-\s*report\s*$|\(report\)|:\s*report\s*$|,\s*report\s*$|in\s+talks)",
    re.I,
)
# Words that start a capture without being a company ("it", "rival", "shares").
_NOT_A_NAME = frozenset(
    """it its it's they them he she we you i company companies firm firms group rival rivals startup startups
    shareholders investors regulators sources source report deal deals talks bid offer stake stakes shares share
    back more assets asset rights stock bonds debt minority business businesses unit units division divisions
    buyer buyers seller sellers target targets bidder bidders suitor suitors board boards who what which that this
    these those there here one some all another others report: analysts analyst ceo cfo founder founders
    billionaire billionaires investor government regulator why how when after as""".split()
)
_LOWER_INSIDE_NAMES = frozenset({"of", "and", "de", "la", "du", "von", "van", "der", "del", "des", "&", "e", "y"})
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"“])")
NAME_WORDS_MAX = 6


def clean_headline(title: str) -> str:
    text = one_line(title[:TEXT_MAX])
    text = _LEADING.sub("", text)
    for _ in range(2):
        text = _TRAILING.sub("", text)
    text = re.sub(r",\s*(?:sources?\s+(?:say|said)|people\s+familiar.*|reports?\s+says?|report|according\s+to.*)\s*$", "", text, flags=re.I)
    return text.strip(" .")


def party_name(raw: str) -> str | None:
    """A captured party as a name, or None when it does not look like a company."""
    text = clean_name(raw)
    text = re.sub(r"^(?:the|a|an)\s+", "", text, flags=re.I)
    text = re.sub(r"['’]s?$", "", text).strip(" -–—\"'“”‘’")
    words = text.split()
    if not words:
        return None
    # "U.S. drugmaker Pfizer" -> "Pfizer", "Paramount studio" -> "Paramount": descriptors in
    # lower case around the name; the last run of name words is the name.
    runs: list[list[str]] = [[]]
    for word in words:
        if _descriptor(word):
            runs.append([])
        else:
            runs[-1].append(word)
    named = [run for run in runs if run]
    if not named:
        return None
    words = named[-1]
    if len(words) > NAME_WORDS_MAX:
        return None
    first = words[0]
    if not (first[0].isupper() or first[0].isdigit() or first[0] == "$" or any(c.isupper() for c in first)):
        return None
    if first.casefold().strip(".,") in _NOT_A_NAME:
        return None
    if not re.search(r"[^\W\d_]", text):
        return None
    return " ".join(words)


def _descriptor(word: str) -> bool:
    """A lower-case word that is no part of a name ("drugmaker"; not "of", "i", "iRobot")."""
    return len(word) >= 3 and word.islower() and word.replace("-", "").isalpha() and word not in _LOWER_INSIDE_NAMES


def _parties(match: re.Match[str]) -> tuple[str, str] | None:
    acquirer, target = party_name(match["a"]), party_name(match["t"])
    if acquirer is None or target is None:
        return None
    if acquirer.casefold() == target.casefold():
        return None
    return acquirer, target


@dataclass(frozen=True, slots=True)
class HeadlineMatch:
    acquirer: str
    target: str
    status: DealStatus
    rule: str


def match_sentence(sentence: str) -> HeadlineMatch | None:
    sentence = sentence[:SENTENCE_MAX]
    text = clean_headline(sentence)
    found = _match_text(text, sentence)
    if found is None and ", " in text:
        # "Chevron wins arbitration, closes Hess deal": the second clause shares the subject.
        first, _, rest = text.partition(", ")
        subject = []
        for word in first.split():
            if word.islower():
                break
            subject.append(word)
        if subject and rest and rest[0].islower():
            found = _match_text(" ".join(subject) + " " + rest, sentence)
    return found


def _match_text(text: str, sentence: str) -> HeadlineMatch | None:
    for rule in RULES:
        match = rule.regex.search(text)
        if match is None:
            continue
        parties = _parties(match)
        if parties is None:
            continue
        status = rule.status
        if status == "announced" and _SOURCED.search(sentence):
            status = "rumored"
        return HeadlineMatch(parties[0], parties[1], status, rule.name)
    return None


# ------------------------------------------------------------------ numbers and terms

_CURRENCY_BY_PREFIX = {
    "us$": "USD", "u.s.$": "USD", "u.s. $": "USD", "$": "USD", "c$": "CAD", "ca$": "CAD", "a$": "AUD",
    "au$": "AUD", "hk$": "HKD", "€": "EUR", "£": "GBP", "¥": "JPY",
}
_CURRENCY_BY_WORD = {
    "dollar": "USD", "euro": "EUR", "pound": "GBP", "sterling": "GBP", "yen": "JPY", "swiss franc": "CHF",
    "franc": "CHF", "yuan": "CNY", "renminbi": "CNY", "rupee": "INR", "kronor": "SEK", "won": "KRW",
}
_SCALES = {
    "trillion": Decimal("1e12"), "tn": Decimal("1e12"), "billion": Decimal("1e9"), "bln": Decimal("1e9"),
    "bn": Decimal("1e9"), "b": Decimal("1e9"), "million": Decimal("1e6"), "mln": Decimal("1e6"),
    "mn": Decimal("1e6"), "m": Decimal("1e6"),
}
_PER_SHARE_AFTER = re.compile(r"^\s*(?:a|per|each|/)\s*(?:share|shr|sh)\b|^\s*/\s*share", re.I)
_NOT_VALUE_AFTER = re.compile(
    r"^\s*(?:in\s+(?:annual\s+)?(?:revenue|sales|debt|profit|losses?|synergies|savings|cash\s+flow)|"
    r"(?:break-?up|termination|reverse\s+termination)\s+fee|of\s+(?:debt|shares|stock|bonds)|(?:share\s+)?buyback|"
    r"(?:in\s+)?(?:share\s+)?repurchase|fine|penalty|settlement|loan|financing|bridge\s+loan|revenue|sales)",
    re.I,
)
_NOT_VALUE_BEFORE = re.compile(
    r"(?:break-?up\s+fee\s+of|termination\s+fee\s+of|fee\s+of|debt\s+of|revenue\s+of|sales\s+of|fined|fine\s+of|"
    r"financing\s+of|loan\s+of|buyback\s+of|repurchase\s+of|synergies\s+of|savings\s+of|market\s+value\s+of)\s*$",
    re.I,
)
_CONSIDERATION: tuple[tuple[Consideration, re.Pattern[str]], ...] = (
    ("mixed", re.compile(
        r"\b(?:cash[- ]and[- ](?:stock|shares?|share)|stock[- ]and[- ]cash|shares?[- ]and[- ]cash|cash[- ]plus[- ]stock|"
        r"mix(?:ture)?\s+of\s+cash\s+and\s+(?:stock|shares)|cash\s+and\s+(?:stock|shares)|stock\s+and\s+cash|"
        r"part[- ]cash|partly\s+in\s+cash|cash[- ]and[- ]share)\b", re.I)),
    ("stock", re.compile(
        r"\b(?:all[- ](?:stock|share)|stock[- ](?:swap|deal|transaction|merger|offer)|share[- ](?:swap|exchange|deal)|"
        r"in\s+stock|in\s+shares|paid\s+in\s+stock|exchange\s+offer|stock-for-stock|share-for-share)\b", re.I)),
    ("cash", re.compile(
        r"\b(?:all[- ]cash|cash[- ](?:deal|offer|transaction|tender\s+offer|bid|takeover|buyout|purchase|acquisition)|"
        r"in\s+cash|for\s+cash|cash-only|cash\s+tender)\b", re.I)),
)
_QUARTER_END = {1: (3, 31), 2: (6, 30), 3: (9, 30), 4: (12, 31)}
_ORDINAL = {"first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4}
_HALF_END = {"first": (6, 30), "1st": (6, 30), "second": (12, 31), "2nd": (12, 31)}
_EXPECTED = re.compile(
    r"\b(?:expected|set|slated|scheduled|anticipated|due|likely|poised)\s+to\s+(?:close|complete|be\s+completed|"
    r"be\s+finalized|conclude|finish)\s+(?:in|by|during|before|within)?\s*(?:the\s+)?(?P<when>[^.;]{0,40})",
    re.I,
)
_MONTHS = {m: i for i, m in enumerate(
    ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
     "november", "december"), start=1)}


def _amount(match: re.Match[str]) -> tuple[Decimal, str] | None:
    try:
        number = Decimal(match["number"].replace(",", ""))
    except InvalidOperation:
        return None
    scale = (match["scale"] or "").lower()
    prefix = (match["prefix"] or "").strip().lower().replace(" ", "")
    word = (match["word"] or "").lower()
    currency = None
    if prefix:
        currency = _CURRENCY_BY_PREFIX.get(prefix) or prefix.upper()[:3]
    elif word:
        stem = word.rstrip("s") if not word.endswith("francs") else "swiss franc" if "swiss" in word else "franc"
        currency = next((code for key, code in _CURRENCY_BY_WORD.items() if stem.startswith(key)), None)
    if currency is None:
        return None
    if scale:
        number *= _SCALES[scale]
    return number, currency


def money_terms(text: str) -> tuple[Decimal | None, str | None, Decimal | None]:
    """(deal value, its currency, price per share) from the text: the first sized amount
    that is not a fee, debt or revenue figure, and the first amount quoted per share."""
    value = currency = per_share = None
    for match in _MONEY_RE.finditer(text):
        if not (match["prefix"] or match["word"]):
            continue
        amount = _amount(match)
        if amount is None:
            continue
        after, before = text[match.end() : match.end() + 40], text[max(0, match.start() - 30) : match.start()]
        if _PER_SHARE_AFTER.search(after) or re.search(r"\bper\s+share\s+of\s*$", before, re.I):
            if per_share is None and not match["scale"] and 0 < amount[0] <= MAX_PRICE_PER_SHARE:
                per_share = amount
            continue
        if value is None and match["scale"] and not _NOT_VALUE_AFTER.search(after) and not _NOT_VALUE_BEFORE.search(before):
            if 0 < amount[0] <= MAX_DEAL_VALUE:
                value = amount
    if value is not None:
        currency = value[1]
    elif per_share is not None:
        currency = per_share[1]
    return (
        value[0] if value else None,
        currency,
        per_share[0] if per_share and (value is None or per_share[1] == value[1]) else None,
    )


def consideration(text: str) -> Consideration | None:
    for kind, pattern in _CONSIDERATION:
        if pattern.search(text):
            return kind
    return None


def expected_close(text: str, published: dt.date) -> dt.date | None:
    """The last day of the period a deal is expected to close in ("in the second quarter of
    2027", "by the end of 2026", "in early 2027", "next year", "in March")."""
    match = _EXPECTED.search(text)
    if match is None:
        return None
    when = match["when"].lower()
    year_match = re.search(r"\b(20\d\d)\b", when)
    year = int(year_match[1]) if year_match else None
    if re.search(r"\bnext\s+year\b", when):
        year = published.year + 1
    if re.search(r"\bthis\s+year\b|\bby\s+year[- ]end\b|\bend\s+of\s+the\s+year\b", when):
        year = published.year
    quarter = re.search(r"\b(?:q([1-4])|(first|second|third|fourth|1st|2nd|3rd|4th)\s+(?:fiscal\s+)?quarter)\b", when)
    half = re.search(r"\b(?:h([12])|(first|second|1st|2nd)\s+half)\b", when)
    month = next((number for name, number in _MONTHS.items() if re.search(rf"\b{name}\b", when)), None)
    if quarter:
        q = int(quarter[1]) if quarter[1] else _ORDINAL[quarter[2]]
        year = year or (published.year if q >= (published.month - 1) // 3 + 1 else published.year + 1)
        month_day = _QUARTER_END[q]
    elif half:
        key = {"1": "first", "2": "second"}.get(half[1] or "", half[2] or "first")
        year = year or published.year
        month_day = _HALF_END[key]
    elif month:
        year = year or (published.year if month >= published.month else published.year + 1)
        next_month = dt.date(year + month // 12, month % 12 + 1, 1)
        return next_month - dt.timedelta(days=1)
    elif year and re.search(r"\bearly\b", when):
        month_day = (6, 30)
    elif year and re.search(r"\bmid\b", when):
        month_day = (9, 30)
    elif year:
        month_day = (12, 31)
    else:
        return None
    if year < published.year or year > published.year + 10:
        return None
    return dt.date(year, *month_day)


# ------------------------------------------------------------------ one article


def extract(title: str, description: str | None, published: dt.date) -> DealFacts | None:
    """The deal the article reports, or None when no rule finds both parties."""
    title = (title or "")[:TEXT_MAX]
    description = (description or "")[:TEXT_MAX]
    found = match_sentence(title)
    if found is None and description:
        for sentence in _SENTENCE_SPLIT.split(description)[:3]:
            found = match_sentence(sentence)
            if found is not None:
                break
    if found is None:
        return None
    both = f"{title}. {description}"
    value, currency, per_share = money_terms(title)
    if value is None or per_share is None:
        more_value, more_currency, more_per_share = money_terms(description)
        if value is None and more_value is not None:
            value, currency = more_value, more_currency
        if per_share is None and more_per_share is not None and (currency is None or more_currency == currency):
            per_share, currency = more_per_share, currency or more_currency
    return DealFacts(
        acquirer=found.acquirer,
        target=found.target,
        status=found.status,
        value=value,
        currency=currency,
        price_per_share=per_share,
        consideration=consideration(both),
        expected_close_on=expected_close(both, published),
        source=SOURCE,
    )
