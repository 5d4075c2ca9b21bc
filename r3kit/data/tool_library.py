"""A library of realistic tool schemas (xLAM format) and, for each, a sampler of (request, gold arguments).

A `Tool` is the schema the model sees plus `sample(rng, values) -> (request text, arguments)`. Argument
types cover string, integer, float, list, bool and optional arguments (an optional argument is sometimes
stated in the request, then it is in the gold arguments; otherwise it is left out, as in xLAM).

Values that a call copies from its request (cities, currency codes, tickers, emails, words, phrases,
dates, event titles, cuisines, subjects) come from a `Values` source: the real lists of `VALUES` (stream
"all"), or made-up values split into two streams that never share one ("train", "held_out"; see Values),
so rows generated for evaluation can use argument values no training row ever used. Numbers are drawn
from the same ranges in every stream, and knowledge the request does not spell out (language -> ISO code,
the units) is shared.
"""

from __future__ import annotations

import random
import string
import zlib
from collections.abc import Callable
from dataclasses import dataclass

VALUES: dict[str, list] = {
    "cities": ["Paris", "Tokyo", "Nairobi", "Lima", "Toronto", "Berlin", "Mumbai", "Sydney", "Austin", "Oslo", "Seoul",
               "Cairo", "Madrid", "Denver", "Quito", "Hanoi", "Dublin", "Accra", "Perth", "Lyon", "Kyoto", "Bogota",
               "Vienna", "Dakar", "Boston", "Lagos", "Rome", "Riga", "Doha", "Pune", "Kiev", "Porto", "Cusco", "Fez"],
    "currencies": ["USD", "EUR", "JPY", "GBP", "INR", "CAD", "AUD", "CHF", "SEK", "NZD", "BRL", "ZAR", "MXN", "SGD",
                   "KRW"],
    "tickers": ["AAPL", "MSFT", "NVDA", "TSLA", "AMZN", "GOOGL", "META", "IBM", "ORCL", "INTC", "AMD", "NFLX", "SHOP",
                "UBER", "SAP", "ADBE", "CSCO", "QCOM"],
    "people": ["alice@example.com", "bob@example.com", "carol@example.com", "dan@example.com", "erin@example.com",
               "frank@mail.org", "grace@mail.org", "heidi@corp.net", "ivan@corp.net", "judy@mail.org", "ken@corp.net",
               "lena@example.com"],
    "words": ["serendipity", "ephemeral", "quixotic", "laconic", "ubiquitous", "meticulous", "gregarious", "candid",
              "lucid", "frugal", "verbose", "stoic", "zealous", "benign", "austere"],
    "phrases": ["good morning", "where is the station", "thank you very much", "see you tomorrow", "how much is it",
                "i am lost", "the bill please", "good night"],
    "dates": ["2025-03-14", "2025-07-01", "2025-11-23", "2026-01-09", "2026-05-30", "2025-02-18", "2025-09-05",
              "2026-03-27", "2026-08-12"],
    "titles": ["Team sync", "Dentist", "Project review", "Lunch with Sam", "Budget planning", "Yoga", "Demo day",
               "Code review", "Board call"],
    "cuisines": ["Thai", "Italian", "vegan", "Ethiopian", "sushi", "Mexican", "Greek", "Korean", "Lebanese"],
    "topics": ["the report", "tomorrow's meeting", "the invoice", "the offer", "the trip", "the launch"],
}
LANGS = {"French": "fr", "Spanish": "es", "German": "de", "Japanese": "ja", "Swahili": "sw"}
STREAMS = ("all", "train", "held_out")
_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]


def _word(rng: random.Random, low: int, high: int) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(low, high)))


_MAKE: dict[str, Callable[[random.Random], str]] = {  # made-up values of each kind, in an endless supply
    "cities": lambda rng: _word(rng, 2, 3).capitalize(),
    "currencies": lambda rng: "".join(rng.choice(string.ascii_uppercase) for _ in range(3)),
    "tickers": lambda rng: "".join(rng.choice(string.ascii_uppercase) for _ in range(rng.randint(3, 4))),
    "people": lambda rng: f"{_word(rng, 1, 2)}@{_word(rng, 1, 2)}.{rng.choice(['com', 'org', 'net'])}",
    "words": lambda rng: _word(rng, 2, 4),
    "phrases": lambda rng: " ".join(_word(rng, 1, 2) for _ in range(rng.randint(2, 4))),
    "dates": lambda rng: f"{rng.randint(2025, 2027)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
    "titles": lambda rng: f"{_word(rng, 1, 2).capitalize()} {_word(rng, 1, 3)}",
    "cuisines": lambda rng: _word(rng, 2, 3).capitalize(),
    "topics": lambda rng: f"the {_word(rng, 1, 3)}",
}


class Values:
    """Where a stream's copied argument values come from. Stream "all": the real lists in VALUES. Streams
    "train" and "held_out": made-up values (names built from syllables, codes from letters, dates), an
    endless supply split by a stable hash (crc32 % 3 == 2: held out), so the two streams never share a value
    and a model trained on one cannot have memorised the other's: it must copy values from the request."""

    def __init__(self, stream: str = "all"):
        if stream not in STREAMS:
            raise ValueError(f"stream must be one of {STREAMS}, got {stream!r}")
        self.stream = stream

    def owns(self, value: str) -> bool:
        held = zlib.crc32(value.encode()) % 3 == 2
        return self.stream == "all" or held == (self.stream == "held_out")

    def choice(self, rng: random.Random, kind: str) -> str:
        if self.stream == "all":
            return rng.choice(VALUES[kind])
        while True:
            value = _MAKE[kind](rng)
            if self.owns(value):
                return value

    def sample(self, rng: random.Random, kind: str, k: int) -> list[str]:
        if self.stream == "all":
            return rng.sample(VALUES[kind], k)
        out: list[str] = []
        while len(out) < k:
            value = self.choice(rng, kind)
            if value not in out:
                out.append(value)
        return out


def values_for(stream: str = "all") -> Values:
    return Values(stream)


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict  # name -> {"description", "type", "default"?}
    sample: Callable[[random.Random, Values], tuple[str, dict]]

    def schema(self) -> dict:
        return {"name": self.name, "description": self.description, "parameters": self.parameters}


def _p(description: str, type_: str, default=None) -> dict:
    spec = {"description": description, "type": type_}
    if default is not None:
        spec["default"] = default
    return spec


def _weather(rng, v):
    city = v.choice(rng, "cities")
    if rng.random() < 0.4:
        unit = rng.choice(["celsius", "fahrenheit"])
        return f"what is the weather in {city} in {unit}", {"location": city, "unit": unit}
    return f"what is the current weather in {city}", {"location": city}


def _convert(rng, v):
    amount = rng.choice([round(rng.uniform(5, 5000), 2), rng.randint(1, 1000)])
    src, dst = v.sample(rng, "currencies", 2)
    return f"convert {amount} {src} to {dst}", {"amount": amount, "from_currency": src, "to_currency": dst}


def _stock(rng, v):
    ticker = v.choice(rng, "tickers")
    if rng.random() < 0.5:
        days = rng.choice([5, 30, 90, 365])
        return f"show the {days}-day price history of {ticker}", {"symbol": ticker, "days": days}
    return f"get the latest stock price of {ticker}", {"symbol": ticker}


def _flights(rng, v):
    a, b = v.sample(rng, "cities", 2)
    date, n = v.choice(rng, "dates"), rng.randint(1, 4)
    args = {"origin": a, "destination": b, "date": date, "passengers": n}
    text = f"find flights from {a} to {b} on {date} for {n} passenger{'s' if n > 1 else ''}"
    if rng.random() < 0.3:
        args["nonstop_only"] = True
        text += ", nonstop only"
    return text, args


def _event(rng, v):
    title = v.choice(rng, "titles")
    date, minutes = v.choice(rng, "dates"), rng.choice([15, 30, 45, 60, 90])
    attendees = v.sample(rng, "people", rng.randint(1, 3))
    text = f"schedule '{title}' on {date} for {minutes} minutes with {', '.join(attendees)}"
    return text, {"title": title, "date": date, "duration_minutes": minutes, "attendees": attendees}


def _bmi(rng, v):
    weight, height = round(rng.uniform(45, 120), 1), round(rng.uniform(1.5, 2.05), 2)
    return f"calculate the BMI for someone weighing {weight} kg and {height} m tall", {"weight_kg": weight, "height_m": height}


def _define(rng, v):
    word = v.choice(rng, "words")
    return f"define the word '{word}'", {"word": word}


def _translate(rng, v):
    phrase, (lang, code) = v.choice(rng, "phrases"), rng.choice(list(LANGS.items()))
    return f"translate '{phrase}' into {lang}", {"text": phrase, "target_language": code}


def _primes(rng, v):
    limit = rng.choice([10, 50, 100, 250, 1000])
    return f"list all prime numbers up to {limit}", {"limit": limit}


def _average(rng, v):
    numbers = [rng.randint(1, 100) for _ in range(rng.randint(3, 6))]
    return f"compute the average of {numbers}", {"numbers": numbers}


def _restaurants(rng, v):
    city, cuisine = v.choice(rng, "cities"), v.choice(rng, "cuisines")
    args = {"city": city, "cuisine": cuisine}
    text = f"find {cuisine} restaurants in {city}"
    if rng.random() < 0.4:
        args["max_results"] = rng.choice([3, 5, 10])
        text += f", at most {args['max_results']} results"
    return text, args


def _email(rng, v):
    to, topic = v.choice(rng, "people"), v.choice(rng, "topics")
    return f"send an email to {to} with subject 'About {topic}'", {"to": to, "subject": f"About {topic}"}


def _timezone(rng, v):
    city = v.choice(rng, "cities")
    return f"what time is it now in {city}", {"city": city}


def _shipping(rng, v):
    weight, dest = round(rng.uniform(0.2, 30), 1), v.choice(rng, "cities")
    express = rng.random() < 0.5
    text = f"estimate the {'express' if express else 'standard'} shipping cost of a {weight} kg parcel to {dest}"
    return text, {"weight_kg": weight, "destination": dest, "express": express}


TOOLS: list[Tool] = [
    Tool("get_weather", "Current weather for a location.",
         {"location": _p("City name.", "str"), "unit": _p("'celsius' or 'fahrenheit'.", "str, optional", "celsius")}, _weather),
    Tool("convert_currency", "Convert an amount between currencies.",
         {"amount": _p("Amount to convert.", "float"), "from_currency": _p("ISO code to convert from.", "str"),
          "to_currency": _p("ISO code to convert to.", "str")}, _convert),
    Tool("get_stock_price", "Latest price, or price history, of a stock.",
         {"symbol": _p("Ticker symbol.", "str"), "days": _p("Days of history.", "int, optional", 1)}, _stock),
    Tool("search_flights", "Search flights between two cities.",
         {"origin": _p("Departure city.", "str"), "destination": _p("Arrival city.", "str"),
          "date": _p("Date, YYYY-MM-DD.", "str"), "passengers": _p("Number of passengers.", "int"),
          "nonstop_only": _p("Only nonstop flights.", "bool, optional", False)}, _flights),
    Tool("create_calendar_event", "Create a calendar event.",
         {"title": _p("Event title.", "str"), "date": _p("Date, YYYY-MM-DD.", "str"),
          "duration_minutes": _p("Length in minutes.", "int"), "attendees": _p("Attendee emails.", "List[str]")}, _event),
    Tool("calculate_bmi", "Body mass index from weight and height.",
         {"weight_kg": _p("Weight in kg.", "float"), "height_m": _p("Height in metres.", "float")}, _bmi),
    Tool("define_word", "Dictionary definition of an English word.", {"word": _p("The word.", "str")}, _define),
    Tool("translate_text", "Translate text into another language.",
         {"text": _p("Text to translate.", "str"), "target_language": _p("ISO 639-1 code.", "str")}, _translate),
    Tool("list_primes", "All primes up to a limit.", {"limit": _p("Upper bound (inclusive).", "int")}, _primes),
    Tool("average", "Arithmetic mean of a list of numbers.", {"numbers": _p("The numbers.", "List[float]")}, _average),
    Tool("find_restaurants", "Restaurants by city and cuisine.",
         {"city": _p("City name.", "str"), "cuisine": _p("Cuisine.", "str"),
          "max_results": _p("Maximum results.", "int, optional", 10)}, _restaurants),
    Tool("send_email", "Send an email.", {"to": _p("Recipient.", "str"), "subject": _p("Subject line.", "str")}, _email),
    Tool("get_local_time", "Current local time in a city.", {"city": _p("City name.", "str")}, _timezone),
    Tool("estimate_shipping", "Shipping cost of a parcel.",
         {"weight_kg": _p("Weight in kg.", "float"), "destination": _p("Destination city.", "str"),
          "express": _p("Express delivery.", "bool")}, _shipping),
]
