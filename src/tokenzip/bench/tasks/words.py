"""Word lists the task generators draw from (written for tokenzip; no external data)."""

from __future__ import annotations

import random
import string

ADJECTIVES = (
    "amber ancient bitter bold brave brisk calm candid cheerful clever cosy crisp curious daring dense distant "
    "eager early elegant faint fierce fragile gentle gloomy golden graceful hollow humble icy idle jagged jolly "
    "keen lively lonely loyal lucky mellow misty modest narrow nimble noble odd pale patient plain polite proud "
    "quiet rapid rare restless rough rustic sandy serene shaggy sharp shy silent silver slender sly smooth solemn "
    "sombre steady stormy sturdy subtle sunny swift tame tender thorny tidy timid velvet vivid wary weary wild "
    "windy wise witty young zealous"
).split()

NOUNS = (
    "anchor apple arrow badger banner barrel beacon beetle blossom bucket cabin camel candle canyon castle cedar "
    "cellar chimney cloud comet compass cricket crow dagger dolphin dove dragon falcon feather ferry fiddle "
    "forest fountain fox garden glacier goblet harbor harp hedge heron island jackal kettle ladder lantern "
    "lemon lizard locket lotus magnet maple meadow mirror moth mountain needle oasis otter owl panther parrot "
    "pebble pepper pigeon pillar planet pond quarry quill rabbit raven ribbon river rocket saddle salmon "
    "shadow shell spider spire squirrel statue stone swan thistle thunder tiger tulip turtle valley violin "
    "walrus willow window wizard wolf"
).split()

# Vocabulary for procedurally generated prose (kept disjoint from the words the tasks ask about).
PROSE = {
    "adj": ("quiet old busy narrow bright dusty cold warm tall small broad early late gentle heavy light "
            "crooked hidden open empty crowded muddy sunlit shady steep low").split(),
    "noun": ("market road bridge square tower library station village field workshop school bakery chapel "
             "orchard hill wall gate roof stair yard lane inn mill well fence barn pier boat cart door "
             "bench clock path street").split(),
    "plural": ("travellers merchants farmers children sailors neighbours visitors workers elders students "
               "musicians fishermen clerks weavers carpenters").split(),
    "verb": ("stands near|leads to|opens onto|runs beside|looks over|lies behind|faces|borders|"
             "surrounds|connects with|casts a shadow on|hides").split("|"),
    "verb_plural": ("gather|wander|argue|rest|sing|trade|linger|hurry|wait|talk quietly").split("|"),
    "time": ("in the morning|after the rain|during the long summer|for most of the year|when the fog lifts|"
             "on market days|at the end of autumn|under a pale sky|before dawn|late in the evening|"
             "whenever the wind turns|on the first day of spring").split("|"),
    "connector": ("Meanwhile|Later|Even so|Around that time|Every so often|As usual|By then|Still").split("|"),
    "clause": ("nobody seems to mind|the old stories say otherwise|it has always been that way|"
               "few people ever ask why|the town council keeps no record of it|the locals shrug at the question|"
               "the reasons are long forgotten|travellers often remark on it").split("|"),
    "participle": ("rebuilt|painted|moved|closed|abandoned|extended|repaired|renamed").split("|"),
}

NOISE_SENTENCES = ("The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.",
                   "There and back again.")

SYLLABLES = ("bre wick tal mor ven dra sel kin lor hav ost pel quin rud sav tor ul yar zen cor fen gal mir "
             "nor bal dun esk har lin mab ner pim ros tev vor").split()

JOBS = ("blacksmith cartographer beekeeper glassblower astronomer locksmith tailor stonemason chemist "
        "bookbinder clockmaker shipwright violinist cooper saddler potter").split()

ANIMALS = ("parrot tortoise ferret hedgehog goat donkey canary peacock lamb pony goose rabbit").split()

ORGANISATIONS = ("Guild of Lantern Makers|Society of Night Walkers|Order of the Copper Key|College of Tide Readers|"
                 "League of Quiet Rowers|Brotherhood of the Salt Road|Circle of Map Collectors|"
                 "Union of Bell Ringers|Academy of Rope Dancers|Fellowship of the Iron Kettle").split("|")


def invented_name(rng: random.Random, syllables: int = 2) -> str:
    """A pronounceable invented word, capitalised (people, towns, pets)."""
    return "".join(rng.choice(SYLLABLES) for _ in range(syllables)).capitalize()


def key_phrase(rng: random.Random) -> str:
    """A RULER-style key: adjective-noun, e.g. ``shaggy-otter``."""
    return f"{rng.choice(ADJECTIVES)}-{rng.choice(NOUNS)}"


def number(rng: random.Random, digits: int = 7) -> str:
    return str(rng.randint(10 ** (digits - 1), 10**digits - 1))


def uuid(rng: random.Random) -> str:
    hexes = f"{rng.getrandbits(128):032x}"
    return f"{hexes[:8]}-{hexes[8:12]}-{hexes[12:16]}-{hexes[16:20]}-{hexes[20:]}"


def coded_word(rng: random.Random, length: int = 5) -> str:
    """A random lower-case letter string (RULER's coded words for frequent-word extraction)."""
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(length))


def variable_name(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_uppercase) for _ in range(5))


def value(rng: random.Random, value_type: str) -> str:
    """A needle value of ``value_type``: ``number`` (7 digits), ``uuid`` or ``word`` (adjective-noun)."""
    if value_type == "number":
        return number(rng)
    if value_type == "uuid":
        return uuid(rng)
    return key_phrase(rng)
