"""Trigger words: whether a pair sentence words a relation, and whether the words can be about that pair.

A label's trigger words ("sister" for sibling_of) mark the sentences that state a relation in words (see edges.py).
A possessed trigger names its possessor's relation, though: in a first-person narration "my sister" is the
narrator's sister, and "Mr. Wopsle's great-aunt" is Mr. Wopsle's, so "Biddy ... looked thoughtfully at my sister"
says nothing of Biddy and the narrator, nor of Biddy and anyone else named there. Such a trigger counts for a pair
only when one of the two is its possessor and the other is the person it names: in apposition ("my friend Holmes",
"Herbert, my dear friend", "Jane's sister Elizabeth"), as the subject of a copula ("Carl was Anna's father", "he was
my friend") or after a preposition ("my marriage to Estella"). "Of" owns a noun as "'s" does: "Colonel Brandon, the
friend of Sir John" says nothing of the Lady Middleton beside them, and "the marriage of Edward and Lucy" ties the
two it names, not the Marianne who hopes against it; but "the son of Sir Charles's younger brother" is the
brother's. "My" counts as the narrator outside quotations; inside them it is the speaker, where the paragraph's
speech tags name one character or, naming none, are the narrator's ("said I"): "“My father will be expecting us,”
said Emma" says nothing of the Harriet she leaves with; where they do not, the trigger counts as before. A
quotation's "your" is the one spoken to's, never the speaker's, so it ties the speaker only as the person it names
("I am your father"). "His" and "her" belong to the nearest character of that gender named before them in the pair's
sentence (inside a quotation, in the same quotation: "If Mrs. March can leave her husband"), as the characters stage
resolves pronouns. With none, one of the pair can own them only if of their gender ("his marriage" ties neither
Marianne nor her mother), and not the one saying "I" there, the speaker in a quotation or the narrator outside one:
"“If this woman is his wife, where does Mrs. Laura Lyons come in?” I asked" says nothing of the narrator and Laura
Lyons, though "I was his friend" may make the narrator the friend of a he in the sentence; for other pairs, or with
any other trigger, the trigger counts as before. So does the narrator's ("my friend") for a character the sentence
calls only he or she ("My friend bowed his compliments", of Holmes), who may be the person it names. "Their father"
has several owners, none of them one character: it counts only for the person it names, as above ("Henry and Eleanor
... their father" makes them no parent and child), but "their marriage" and other ties count for any pair. A
possessed trigger also says which of the two is which in a directed relation: "Emma ... her father, Mr. Woodhouse"
makes him the parent though the sentence names her first, and "Barrymore, Sir Charles's butler" makes Sir Charles
the employer (HEAD_WORDS, TAIL_WORDS). "Married" with no one after it says only that one person is married ("Here's
Meg married and a mamma", "Mr. Ferrars was married"), so it counts only for two named side by side as its subject
("Edward and Lucy were married") or after a plural subject ("us to be married"). An unowned trigger in an indefinite
phrase ("treat her like a child", "four spoiled children", "some friends") is someone the sentence does not name, so
it counts only where the phrase names one of the pair ("Hannah is a model servant", "a brother, Ben").

A trigger that is a name, a title or an address is the person it calls, not a tie between two others: "Mother
can't leave Father" says nothing of the two sisters in the sentence, nor "Aunt March" of the nieces beside her,
nor "Only this last week, father," said to Silas of Eppie and the Aaron she speaks of. Such a trigger counts
only for the character whose mention it is part of or stands by ("Uncle Pumblechook"), and a title that is no
tie ("Master Marner") for nobody. It is one when capitalised within a sentence, when an address term (father,
aunt, ...) opens a sentence or a quotation, or when an address term stands between commas (or a quotation's
edge) inside a quotation. An address with a known speaker ("“Yes, father,” said Eppie to Silas", "“My dear
friend,” said Ben to me") counts for the speaker and whoever the sentence names outside the quotation. And
"engaged" followed by in, at, for or a verb ("engaged in conversation", "engaged to dine") is busy, not betrothed,
and the "sister" of "sister-in-law" no sibling.

On the Massey dev novels the rules stop 1,955 (pair sentence, label) cases among the guide's five best labels
from counting. Five seeded samples of 40, read by hand, agree with them in 35 (possessives), 38 (names,
addresses and "their"), 39 (speakers' "my" and titles), 40 ("engaged") and 39 (indefinite phrases and
in-laws), all 45 cases "of" stops in 41, a sample of 30 of those a quotation's "his" and "her" stop in 28, all
26 that an unowned "his" or "her" and the narrator's speech tags stop in 25, and samples of 40 of those "married"
with no one after it and an unowned pronoun of neither's gender stop in 40 and 39, and all 29 a quotation's "your"
stops in 28 (BENCHMARKS.md, books).
"""
from __future__ import annotations

import bisect
import re
from collections import defaultdict
from typing import Iterable

from ..schema import Schema
from .characters import FIRST_PERSON, quoted, speech
from .pairs import PairMention
from .records import BookText, Characters

NARRATOR = "narrator"
# Up to three words between a possessive and its trigger ("my dear old friend", "my green and yellow friend"),
# none of them a word that would end the possessed phrase ("my hand to the friend").
_MODIFIERS = r"(?:(?!(?:the|a|an|to|of|in|on|at|by|for|from|with|into|upon|as|than|that|this|his|her|their|its|" \
             r"my|our|your|who|which|was|were|is|are|be|had|has|have|said)\s)[a-z][a-z'’-]*\s+){0,3}"
MY_BEFORE = re.compile(rf"\b[Mm]y\s+{_MODIFIERS}$")
PRONOUN_BEFORE = re.compile(rf"\b([Hh]is|[Hh]er)\s+{_MODIFIERS}$")
THEIR_BEFORE = re.compile(rf"\b[Tt]heir\s+{_MODIFIERS}$")
YOUR_BEFORE = re.compile(rf"\b[Yy]our\s+{_MODIFIERS}$")
# "X's" before the trigger, but not "he's", "it's", "that's": there the 's is "is" or "has" ("he's married").
GENITIVE_BEFORE = re.compile(rf"(?<!\b[Hh]e)(?<!\b[Ss]he)(?<!\b[Ii]t)(?<!\b[Tt]hat)(?<!\b[Tt]here)(?<!\b[Hh]ere)"
                             rf"(?<!\b[Ww]ho)(?<!\b[Ww]hat)(?<!\b[Ww]here)(?<!\b[Ll]et)"
                             rf"(?:(?<=[A-Za-z])['’]s|(?<=s)['’])\s+{_MODIFIERS}$")
# Between the trigger and the person it names: "my friend Holmes", "my sister, Mrs. Joe", "my friend and
# colleague Lestrade", "my marriage to Estella"; not "your brothers and sisters--I", whose dash ends the phrase.
NAMED_AFTER = re.compile(r"(?:\s+(?:and|or)\s+[a-z]+(?:-[a-z]+)*)?\s*,?\s*(?:(?:of|for|to|with)\s+)?"
                         r"(?:[A-Z][a-z]{0,9}\.?\s+)?")
# Between the person and the possessed phrase: "Herbert, my dear friend", "Carl was Anna's father", "Joe, who had
# always been my friend", "Hannah, the servant, was my most frequent visitor".
_ADVERBS = r"(?:(?:now|still|always|once|then|also|not|never|ever|already|indeed|really|truly|only)\s+){0,2}"
NAMED_BEFORE = re.compile(rf"(?:\s*,[^,;:.!?“”\"]{{1,40}},)?\s*(?:\(|,?\s*(?:—|–|--)|,)?\s*(?:(?:who|that)\s+)?"
                          rf"(?:(?:is|was|were|are|am|became|becomes|remained|remains|seemed|seems)\s+{_ADVERBS}"
                          rf"|(?:had|has|have|would|will)\s+{_ADVERBS}(?:been|be)\s+{_ADVERBS})?")
HYPHENATED = re.compile(r"(?:[A-Za-z]+-)*$")
# "the husband of Lucy", "Mrs. Joe, wife of Joe Gargery": a trigger that is a noun (an article, or a comma of
# apposition, before it) owned by the character named after "of"; not "knew of Lucy", where "of" follows a verb.
NOUN_BEFORE = re.compile(rf"(?:\b(?:[Tt]he|[Aa]n?|[Tt]his|[Tt]hat|[Oo]ne)\s+|(?:,|—|–|--)\s*)"
                         rf"(?P<words>{_MODIFIERS})$")
# "a child", "like a friend", "four spoiled children", "such a sister-in-law": someone the phrase does not name, not
# a tie of two characters named elsewhere in the sentence; "the two friends", "her two friends" and "a little
# acquainted" are no such phrase.
_NUMBERS = r"(?:[Aa]n?|[Oo]ne|[Tt]wo|[Tt]hree|[Ff]our|[Ff]ive|[Ss]ix|[Ss]ome|[Mm]any|[Ss]everal|[Nn]o|[Aa]ny|" \
           r"[Oo]ther|[Ss]uch)"
INDEFINITE_BEFORE = re.compile(r"(?<!\bthe\s)(?<!\bthese\s)(?<!\bthose\s)(?<!\bmy\s)(?<!\bour\s)(?<!\byour\s)"
                               r"(?<!\bhis\s)(?<!\bher\s)(?<!\btheir\s)"
                               rf"\b(?!a\s+(?:little|bit|great\s+deal|good\s+deal)\s*$){_NUMBERS}\s+{_MODIFIERS}$")
OF_AFTER = re.compile(r"\s+of\s+(?:the\s+)?")
AND_AFTER = re.compile(r",?\s+and\s+")
# "of Sir Charles's younger brother": the of-phrase's owner is the brother; not "a friend of Miss Havisham's before"
GENITIVE_AFTER = re.compile(r"['’]s?\s+(?!(?:and|or|but|nor|before|after|since|in|at|on|to|for|with|by|from|of|who|"
                            r"whom|which|that|when|while|as|than|was|were|is|are|had|has|have|would|could|should|"
                            r"did|does|do|being|been|be|so|too|also|then|now|there|here|again)\b)[a-z]")
# Words a character is called or addressed by ("Mother can't leave Father", "Yes, father,"): such a use names
# a person, so it says nothing of two others in the sentence.
ADDRESS_TERMS = frozenset("father mother papa mamma mama dad uncle aunt grandfather grandmother brother "
                          "sister cousin master mistress".split())
# A sentence or a quotation opens before a word that has only these between it and the last full stop.
_OPENING = " \t\n\"“”‘’'(—–-"
# In a quotation, an address term between a comma (or the quotation's start) and a comma or the quotation's end:
# "Only this last week, father," "Father, dear, ...".
VOCATIVE_BEFORE = re.compile(r"(?:^|[,!?;]|[“\"‘'])\s*(?:(?:my\s+)?dear(?:\s+old)?\s+|poor\s+|[Oo]h,?\s+)?$")
VOCATIVE_AFTER = re.compile(r"\s*(?:[,!?;]|\.(?=\s*[”\"’']))")
# Address terms that are titles, not ties, before a name: "Master Marner" is no one's employer.
HONORIFICS = frozenset(("master", "mistress"))
GROUP = "\0group"  # "their": the owners are several, none of them one character
# An unresolved "his" or "her" belongs to someone the sentence names no more closely: not the one who says it in a
# quotation (who would say "my"), nor the narrator in narration.
THIRD = "\0third"
SECOND = "\0second"  # a quotation's "your": the one spoken to, never the speaker
# Triggers that name a tie, not a person: "their marriage", "their friendship" is a tie between the owners.
TIES = frozenset("marriage wedding friendship acquaintance courtship quarrel feud hatred love partnership".split())
# Trigger words with a second sense that names no tie, told by what follows them: "engaged in conversation",
# "engaged for the next dance", "engaged to dine" are busy, where "engaged to Miss Fairfax" and "engaged to be
# married" are betrothed.
OTHER_SENSE = {"engaged": re.compile(r"\s+(?:in|upon|on|at|for|by|with|elsewhere|to\s+(?!(?:be|him|her|me|you|a|"
                                     r"an|another|my|his|one|each|the|some|your|their)\b)[a-z]+)\b"),
               # the "sister" of "sister-in-law" is no sibling (the in-laws are relatives' own triggers)
               **dict.fromkeys(("father", "mother", "son", "daughter", "brother", "sister"), re.compile("-in-law"))}
# "Married" with no one after it says one person is married, to someone the sentence need not name ("Here's Meg married
# and a mamma", "Mr. Ferrars was married"): a tie of two only when they are its subject together ("Edward and Lucy
# were married", "I should want us to be married"). With someone after it ("married Mr. Hubble", "married to William
# Dane"), it ties two.
MARRIAGE_VERBS = frozenset(("married", "marry", "marries", "wedded"))
MARRIAGE_OBJECT = re.compile(r"\s+(?:to|with|him|her|me|you|them|us|one|another|a|an|the|his|my|your|their|our|"
                             r"[A-Z][a-z]*)\b")
PLURAL_SUBJECT = re.compile(r"\b(?:[Ww]e|us|[Tt]hey|them|both)\s+(?:[a-z]+\s+){0,3}$")
COORDINATED = re.compile(r"\s*,?\s+and\s+")
# Directed labels' trigger words by the side of the relation the person they name is on: "her father Carl" makes Carl
# the parent (HEAD of parent_of), "his servant Dora" makes Dora the servant (TAIL of employer_of).
HEAD_WORDS = {"parent_of": frozenset("father mother papa mamma mama dad parent parents stepmother stepfather".split()),
              "employer_of": frozenset("master mistress employer".split()),
              "mentor_of": frozenset("teacher tutor governess schoolmaster guardian mentor".split())}
TAIL_WORDS = {"parent_of": frozenset("son daughter child children".split()),
              "employer_of": frozenset("servant servants maid housekeeper butler footman valet coachman clerk".split()),
              "mentor_of": frozenset("pupil student apprentice scholar".split())}
_LOOK_BACK = 60


def trigger_patterns(schema: Schema) -> dict[str, re.Pattern]:
    """Per label, one case-insensitive whole-word pattern over its trigger words."""
    return {label.name: re.compile(r"\b(?:" + "|".join(re.escape(t) for t in sorted(label.triggers, key=len,
                                                                                   reverse=True)) + r")\b", re.I)
            for label in schema.labels if label.triggers}


class TriggerWords:
    """Whether a pair sentence holds a trigger word of a label that can speak of its pair. With the book's
    `characters`, the module docstring's rules say whose a trigger is (possessives, speakers, names and addresses,
    other senses); without them, any trigger counts."""

    def __init__(self, book: BookText, schema: Schema, characters: Characters | None = None):
        self.text = book.text
        self.patterns = trigger_patterns(schema)
        self.possession = characters is not None
        # the quotations, and those whose speaker is known (sorted alike)
        self.quotes, self.speakers = speech(book, characters) if characters else ([], [])
        self.genders = {c.id: c.gender for c in characters.characters} if characters else {}
        self.spans: dict[str, list[tuple[int, int, bool]]] = defaultdict(list)  # character -> (start, end, pronoun)
        self.ends: dict[int, tuple[str, int]] = {}                        # mention end -> (character, start)
        self.named: list[tuple[int, str]] = []                            # (start, character) of names, sorted
        for m in sorted(characters.mentions if characters else (), key=lambda m: m.start):
            if m.kind not in ("speaker", "narrator"):  # the narrator's spans are every I/me/my, found when needed
                self.spans[m.character].append((m.start, m.end, m.kind == "pronoun"))
                self.ends.setdefault(m.end, (m.character, m.start))  # "Mr. Wopsle" before the "Wopsle" inside it
            if m.kind in ("name", "title"):
                self.named.append((m.start, m.character))

    def states(self, label: str, mention: PairMention) -> bool:
        return self.reading(label, mention) is not None

    def reading(self, label: str, mention: PairMention) -> tuple[str, str] | None:
        """None when the sentence holds no trigger of the label that can speak of the pair; else (head, tail), the
        pair in the order the label holds between them: the mention's own order, unless the sentence's possessed
        triggers of a directed label say the other ("Emma ... her father, Mr. Woodhouse": he is the parent)."""
        pattern = self.patterns.get(label)
        if pattern is None:
            return None
        orders, stated = set(), False
        for match in pattern.finditer(self.text, mention.start, mention.end):
            about = self._about(match, mention)
            stated = stated or bool(about)
            if isinstance(about, tuple):  # (owner, person): "father" puts the person at the head, "son" the owner
                word = match.group().lower()
                if word in HEAD_WORDS.get(label, ()):
                    orders.add(about[::-1])
                elif word in TAIL_WORDS.get(label, ()):
                    orders.add(about)
        if not stated:
            return None
        return orders.pop() if len(orders) == 1 else (mention.head, mention.tail)

    def _about(self, match: re.Match, mention: PairMention) -> bool | tuple[str, str]:
        """Whether the trigger can speak of the pair; (owner, person) where it is one of the pair's possessed by the
        other ("Emma's father, Mr. Woodhouse": (Emma, Mr. Woodhouse))."""
        if not self.possession:
            return True
        other_sense = OTHER_SENSE.get(match.group().lower())
        if other_sense and other_sense.match(self.text, match.end()):
            return False
        if match.group().lower() in MARRIAGE_VERBS and not MARRIAGE_OBJECT.match(self.text, match.end()):
            before = self.text[max(mention.start, match.start() - _LOOK_BACK):match.start()]
            if not PLURAL_SUBJECT.search(before):
                return self._coordinated(mention, match.start())
        pair = (mention.head, mention.tail)
        owned = self._possessor(match.start(), mention.start)
        if owned and owned[0] in (THIRD, SECOND):
            # one of the two owns it, so one is a he for "his" and a she for "her": "his marriage" ties neither
            # Marianne nor her mother
            gender = {"his": "m", "her": "f"}.get(self.text[owned[1]:owned[1] + 3].lower())
            if gender and not any(self.genders.get(c) in (gender, None) for c in pair):
                return False
            first, spans = self._first_person(owned[1], mention)
            if first in pair:
                # the speaker or the narrator can only be the one the phrase names ("I was his friend", "I am your
                # father")
                other = mention.tail if first == mention.head else mention.head
                fits = gender is None or self.genders.get(other) in (gender, None)
                named = fits and any(self._names(start, end, owned[1], match.end()) for start, end in spans)
                return (other, first) if named else False
            owned = None  # otherwise it counts as an unowned trigger
        phrase_start, phrase_end = (owned[1] if owned else match.start()), match.end()
        if owned is None and (after := self._owner_after(match, mention.start, mention.end)):
            owners, phrase_start, phrase_end = after
            if len(owners) == 2:
                # "the marriage of Edward and Lucy" ties the two; "the father of Anna and Ben" is each one's
                if match.group().lower() in TIES:
                    return set(owners) == set(pair)
                owners = tuple(c for c in owners if c in pair)
                if len(owners) != 1:
                    return False
            owned = owners[0], phrase_start
        speaker = self._speaker(match.start())
        if speaker and self._said_to(phrase_start, match.end(), mention.start):
            # "“My dear friend,” said Ben to me", "“Yes, father,” said Eppie to Silas": the speaker's tie with
            # the one spoken to, who is named outside the quotation, not with those the speech names
            other = mention.tail if speaker == mention.head else mention.head
            spoken_to = speaker in pair and any(not quoted(self.quotes, start)
                                                for start, _, _ in self._spans(other, mention.start, mention.end))
            return (speaker, other) if spoken_to else False
        if self._calls(match, mention.start):
            return (match.group().lower() not in HONORIFICS
                    and any(self._is_part_of(c, match) for c in pair))
        if owned is None:
            # "treat her like a child": someone unnamed, unless the phrase names one of the two ("Hannah, a servant")
            indefinite = INDEFINITE_BEFORE.search(self.text, max(mention.start, match.start() - _LOOK_BACK),
                                                  match.start())
            return not indefinite or self._names_either(mention, indefinite.start(), match.end())
        owner = owned[0]
        if owner == GROUP and match.group().lower() in TIES:
            return True
        if owner == GROUP:  # "Henry and Eleanor ... their father": the two share him, they are not he
            return self._names_either(mention, phrase_start, match.end())
        if owner not in pair:
            return False
        other = mention.tail if owner == mention.head else mention.head
        spans = list(self._spans(other, mention.start, mention.end))
        if owner == NARRATOR and all(pronoun for *_, pronoun in spans):
            return True  # "My friend bowed his compliments": one the sentence only calls he or she may be the friend
        named = any(self._names(start, end, phrase_start, phrase_end) for start, end, _ in spans)
        return (owner, other) if named else False

    def _coordinated(self, mention: PairMention, at: int) -> bool:
        """Whether the two are named side by side before `at`, joined by "and" ("Edward and Lucy were married")."""
        spans = sorted((start, end, c) for c in (mention.head, mention.tail)
                       for start, end, _ in self._spans(c, mention.start, at))
        return any(a != b and COORDINATED.fullmatch(self.text, a_end, b_start)
                   for (_, a_end, a), (b_start, _, b) in zip(spans, spans[1:]))

    def _calls(self, match: re.Match, floor: int) -> bool:
        """Whether the trigger is a name, a title or an address ("Mother can't leave Father", "Aunt March", "Yes,
        father,"), not a word about someone: capitalised within a sentence, an address term opening one, or an
        address term said to someone in a quotation."""
        word, at = match.group(), match.start()
        before = self.text[max(floor, at - _LOOK_BACK):at]
        opens = not before.rstrip(_OPENING) or before.rstrip(_OPENING)[-1] in ".!?:;"
        address = word.lower() in ADDRESS_TERMS and self.text[match.end():match.end() + 3] not in ("-in", " of")
        if word[0].isupper():
            return address or not opens
        return address and self._said_to(at, match.end(), floor)

    def _said_to(self, phrase_start: int, phrase_end: int, floor: int) -> bool:
        """Whether the phrase is an address in a quotation: between commas, or a comma and the quotation's edge,
        and not followed by the name it stands for ("My sister, Meg, used to ride")."""
        before = self.text[max(floor, phrase_start - _LOOK_BACK):phrase_start]
        after = VOCATIVE_AFTER.match(self.text, phrase_end)
        if not (quoted(self.quotes, phrase_start) and VOCATIVE_BEFORE.search(before) and after):
            return False
        i = bisect.bisect_left(self.named, (after.end(), ""))
        return not (i < len(self.named) and not self.text[after.end():self.named[i][0]].strip())

    def _is_part_of(self, character: str, match: re.Match) -> bool:
        """Whether the name or title the trigger is belongs to this character's mention: it lies inside the
        mention or right beside it ("Uncle Pumblechook" where the mention is "Pumblechook", "Aged Parent")."""
        for start, end, pronoun in self._spans(character, match.start() - _LOOK_BACK, match.end() + 2):
            if start <= match.start() and match.end() <= end:
                return True
            if pronoun:
                continue
            if start >= match.end() and not self.text[match.end():start].strip():
                return True
            if end <= match.start() and not self.text[end:match.start()].strip():
                return True
        return False

    def _possessor(self, at: int, floor: int) -> tuple[str | None, int] | None:
        """(possessor, where the possessed phrase starts) for a trigger starting at `at`, or None when nobody
        owns it. The possessor is the narrator, a character, or None for someone the book does not name as one
        ("the doctor's wife")."""
        at -= len(HYPHENATED.search(self.text, max(floor, at - _LOOK_BACK), at).group())  # "great-" of "great-aunt"
        start = max(floor, at - _LOOK_BACK)
        before = self.text[start:at]
        # The nearer possessive owns the trigger: "my brother's wife" is the brother's.
        if m := GENITIVE_BEFORE.search(before):
            owner_end = start + m.start()
            return self.ends.get(owner_end, (None, owner_end))
        if m := THEIR_BEFORE.search(before):
            return GROUP, start + m.start()
        if m := MY_BEFORE.search(before):
            if not quoted(self.quotes, start + m.start()):
                return NARRATOR, start + m.start()
            if speaker := self._speaker(start + m.start()):
                return speaker, start + m.start()
        if (m := YOUR_BEFORE.search(before)) and quoted(self.quotes, start + m.start()):
            return SECOND, start + m.start()
        if m := PRONOUN_BEFORE.search(before):
            # in a quotation, the nearest name in the same quotation ("If Mrs. March can leave her husband")
            at = start + m.start()
            if quoted(self.quotes, at):
                q = bisect.bisect_right(self.quotes, (at, float("inf"))) - 1
                floor = max(floor, self.quotes[q][0])
            gender = "m" if m.group(1).lower() == "his" else "f"
            i = bisect.bisect_left(self.named, (at, "")) - 1
            while i >= 0 and self.named[i][0] >= floor and self.genders.get(self.named[i][1]) != gender:
                i -= 1
            if i >= 0 and self.named[i][0] >= floor:
                return self.named[i][1], at
            return THIRD, at
        return None

    def _owner_after(self, match: re.Match, floor: int, ceiling: int) -> tuple[tuple[str, ...], int, int] | None:
        """(possessors, phrase start, phrase end) for a noun trigger that one or two characters own by "of": "the
        husband of Lucy", "Mrs. Joe, wife of Joe Gargery", "the marriage of Edward and Lucy". The phrase runs from
        its article (or the trigger, after a comma) to the end of the last possessor's name."""
        of = OF_AFTER.match(self.text, match.end(), ceiling)
        noun = of and NOUN_BEFORE.search(self.text, max(floor, match.start() - _LOOK_BACK), match.start())
        if not noun or not (first := self._named_at(of.end())):
            return None
        owners, end = [first[0]], first[1]
        if GENITIVE_AFTER.match(self.text, end):
            owners = [None]  # "the son of Sir Charles's younger brother": someone the book does not name
        elif (joined := AND_AFTER.match(self.text, end, ceiling)) and (second := self._named_at(joined.end())):
            owners.append(second[0])
            end = second[1]
        return tuple(owners), noun.start() if noun.group()[0].isalpha() else noun.start("words"), end

    def _named_at(self, at: int) -> tuple[str, int] | None:
        """(character, end) of the name or title that starts at `at`."""
        i = bisect.bisect_left(self.named, (at, ""))
        if i == len(self.named) or self.named[i][0] != at:
            return None
        character = self.named[i][1]
        return character, next(end for _, end, _ in self._spans(character, at, at + 1))

    def _first_person(self, at: int, mention: PairMention) -> tuple[str | None, list[tuple[int, int]]]:
        """Who "I" is at `at` (the quotation's speaker, or the narrator outside quotations), and the spans of "I",
        "me" and "my" that are that person in the pair's sentence (within the same quotation)."""
        if not quoted(self.quotes, at):
            return NARRATOR, [(start, end) for start, end, _ in self._spans(NARRATOR, mention.start, mention.end)]
        q_start, q_end = self.quotes[bisect.bisect_right(self.quotes, (at, float("inf"))) - 1]
        return self._speaker(at), [m.span() for m in FIRST_PERSON.finditer(self.text, max(mention.start, q_start),
                                                                            min(mention.end, q_end))]

    def _speaker(self, at: int) -> str | None:
        """Who says the quotation around `at`, where its paragraph's speech tags name one character."""
        i = bisect.bisect_right(self.speakers, (at, float("inf"), "")) - 1
        return self.speakers[i][2] if i >= 0 and self.speakers[i][0] <= at < self.speakers[i][1] else None

    def _spans(self, character: str, start: int, end: int) -> Iterable[tuple[int, int, bool]]:
        if character == NARRATOR:
            return ((m.start(), m.end(), False) for m in FIRST_PERSON.finditer(self.text, start, end)
                    if not quoted(self.quotes, m.start()))
        spans = self.spans.get(character, [])
        return spans[bisect.bisect_left(spans, (start,)):bisect.bisect_left(spans, (end,))]

    def _names_either(self, mention: PairMention, phrase_start: int, phrase_end: int) -> bool:
        """Whether the phrase names one of the pair in the pair's sentence."""
        return any(self._names(start, end, phrase_start, phrase_end) for c in (mention.head, mention.tail)
                   for start, end, _ in self._spans(c, mention.start, mention.end))

    def _names(self, start: int, end: int, phrase_start: int, phrase_end: int) -> bool:
        """Whether the span start:end is the person the possessed phrase phrase_start:phrase_end names."""
        if start >= phrase_end:
            return NAMED_AFTER.fullmatch(self.text, phrase_end, start) is not None
        if end <= phrase_start:
            return NAMED_BEFORE.fullmatch(self.text, end, phrase_start) is not None
        return False
