"""Tools with varied JSON Schemas for structured-output tests and the benchmark: each entry is
(tool, user request that suits it). The grammar keeps whitespace fixed, but a 135M model can
still loop inside a free-text string or an open-ended array: the cases where SmolLM2 does (a
note's text, a search query, a meeting's attendees, a photo's tags) carry maxLength / maxItems."""

import json

import jsonschema


def tool(name: str, description: str, parameters: dict | None, strict: bool = False) -> dict:
    function = {"name": name, "description": description}
    if parameters is not None:
        function["parameters"] = parameters
    if strict:
        function["strict"] = True
    return {"type": "function", "function": function}


def obj(properties: dict, required: list[str] | None = None, **extra) -> dict:
    schema = {"type": "object", "properties": properties, **extra}
    if required is not None:
        schema["required"] = required
    return schema


STRING = {"type": "string"}

CASES = [
    (tool("get_weather", "Current weather in a city", obj(
        {"city": STRING, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        ["city", "unit"])), "What's the weather in Paris, in celsius?"),
    (tool("ship_parcel", "Ship a parcel to an address", obj(
        {"address": obj({"street": STRING, "city": STRING, "country": STRING},
                        ["street", "city", "country"])}, ["address"])),
     "Ship my parcel to 10 Downing Street, London, UK."),
    (tool("tag_photo", "Tag a photo", obj(
        {"tags": {"type": "array", "items": {"type": "string", "maxLength": 24}, "minItems": 1,
                  "maxItems": 3}}, ["tags"])),
     "Tag my beach photo with sea, sand and sun."),
    (tool("order_food", "Order food", obj(
        {"items": {"type": "array", "minItems": 1, "maxItems": 4, "items": obj(
            {"dish": STRING, "quantity": {"type": "integer", "minimum": 1, "maximum": 9}},
            ["dish", "quantity"])}}, ["items"])), "Order two pizzas and one salad."),
    (tool("create_user", "Create a user account", obj(
        {"username": STRING, "age": {"type": "integer"}, "admin": {"type": "boolean"}},
        ["username"])), "Create an account for alice, aged 30."),
    (tool("set_alarm", "Set an alarm", obj(
        {"hour": {"type": "integer", "minimum": 0, "maximum": 23},
         "minute": {"type": "integer", "minimum": 0, "maximum": 59}},
        ["hour", "minute"], additionalProperties=False)), "Wake me up at 7:30."),
    (tool("set_thermostat", "Set the thermostat", obj(
        {"celsius": {"type": "number", "minimum": 10, "maximum": 30}}, ["celsius"])),
     "Make it 21.5 degrees at home."),
    (tool("rate_movie", "Rate a movie", obj(
        {"title": STRING, "stars": {"type": "integer", "exclusiveMinimum": 0,
                                    "exclusiveMaximum": 6}}, ["title", "stars"])),
     "I give Inception five stars."),
    (tool("lookup_order", "Look up an order by id", obj(
        {"order_id": {"anyOf": [{"type": "integer"}, {"type": "string"}]}}, ["order_id"])),
     "Where is my order 4471?"),
    (tool("find_zip", "Find places by US zip code", obj(
        {"zip": {"type": "string", "pattern": "^[0-9]{5}$"}}, ["zip"])),
     "What is around zip code 94103?"),
    (tool("draw_line", "Draw a line between two points", {
        "type": "object", "$defs": {"point": obj({"x": {"type": "number"},
                                                 "y": {"type": "number"}}, ["x", "y"])},
        "properties": {"start": {"$ref": "#/$defs/point"}, "end": {"$ref": "#/$defs/point"}},
        "required": ["start", "end"]}), "Draw a line from (0, 0) to (3, 4)."),
    (tool("send_message", "Send a chat message", obj(
        {"to": STRING, "text": STRING, "urgent": {"type": "boolean"}},
        ["to", "text", "urgent"])), "Tell Bob I am late, it's urgent."),
    (tool("add_note", "Add a note, optionally to a folder", obj(
        {"text": {"type": "string", "maxLength": 40}, "folder": {"type": ["string", "null"]}},
        ["text", "folder"])),
     "Note: buy milk."),
    (tool("api_call", "Call version 2 of the API", obj(
        {"version": {"const": 2}, "endpoint": {"type": "string", "enum": ["/users", "/orders"]}},
        ["version", "endpoint"])), "List the users."),
    (tool("airport_info", "Information about an airport", obj(
        {"iata": {"type": "string", "minLength": 3, "maxLength": 3}}, ["iata"])),
     "Tell me about the Paris Charles de Gaulle airport."),
    (tool("set_priority", "Set a ticket's priority", obj(
        {"ticket": {"type": "integer"}, "level": {"enum": [1, 2, 3]}}, ["ticket", "level"])),
     "Make ticket 12 top priority."),
    (tool("set_color", "Set the lamp color", obj(
        {"rgb": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 255},
                 "minItems": 3, "maxItems": 3}}, ["rgb"])), "Make the lamp orange."),
    (tool("book_meeting", "Book a meeting", obj(
        {"title": STRING, "attendees": {"type": "array", "maxItems": 3, "items": obj(
            {"name": STRING, "optional": {"type": "boolean"}}, ["name", "optional"])},
         "room": obj({"floor": {"type": "integer"}, "name": STRING}, ["floor", "name"],
                     additionalProperties=False)},
        ["title", "attendees", "room"], additionalProperties=False)),
     "Book a design review with Ann and Raj in room Blue on floor 3."),
    (tool("get_time", "The current time (no arguments)", None), "What time is it?"),
    (tool("measure_shape", "Area of a shape", obj(
        {"shape": {"anyOf": [
            obj({"kind": {"const": "circle"}, "radius": {"type": "number"}},
                ["kind", "radius"], additionalProperties=False),
            obj({"kind": {"const": "square"}, "side": {"type": "number"}},
                ["kind", "side"], additionalProperties=False)]}}, ["shape"])),
     "What is the area of a circle of radius 2?"),
    (tool("search_web", "Search the web", obj(
        {"query": {"type": "string", "maxLength": 60},
         "limit": {"type": "integer", "minimum": 1, "maximum": 50},
         "safe": {"type": "boolean"}}, ["query", "limit"], additionalProperties=False)),
     "Search for the best pasta recipes, top 5."),
    (tool("convert_currency", "Convert money", obj(
        {"amount": {"type": "number", "exclusiveMinimum": 0},
         "from": {"type": "string", "enum": ["USD", "EUR", "GBP", "JPY"]},
         "to": {"type": "string", "enum": ["USD", "EUR", "GBP", "JPY"]}},
        ["amount", "from", "to"])), "How much is 100 dollars in euros?"),
]

# What outlines-core's JSON-Schema -> regex conversion does not enforce (checked by the
# suite): such tools are expected to produce schema-invalid arguments there sometimes.
OUTLINES_UNENFORCED = {
    "set_alarm": "integer minimum/maximum",
    "set_thermostat": "number minimum/maximum",
    "rate_movie": "exclusiveMinimum/exclusiveMaximum",
    "order_food": "integer bounds inside array items",
    "set_color": "integer bounds inside array items",
    "search_web": "integer minimum/maximum",
    "convert_currency": "exclusiveMinimum",
}


def parameters(t: dict) -> dict:
    return t["function"].get("parameters") or {"type": "object", "properties": {},
                                               "additionalProperties": False}


def validation_error(t: dict, arguments: str) -> str | None:
    """Why `arguments` (JSON text) do not satisfy the tool's schema; None if they do."""
    try:
        value = json.loads(arguments)
    except ValueError as e:
        return f"not JSON ({e}): {arguments!r}"
    try:
        jsonschema.validate(value, parameters(t))
    except jsonschema.ValidationError as e:
        return f"{e.message} in {arguments}"
    return None
