"""One grammar for transferkit's short specs: `name:1,2,key=value`.

Penalties (`"l2:1e-4"`), constraints (`"max_norm:3,axis=0"`), optimizers
(`"sgd:momentum=0.9"`), learning-rate schedules (`"cosine:warmup=0.05"`),
augmentation (`"flip=horizontal,rotate=0.1"`) and freeze plans (`"last:20"`)
are all written in it, and `parse` reads every one of them:

    spec    := NAME | NAME ":" [items] | items
    items   := item ("," item)*          positional values first, then key=value
    item    := value | KEY "=" value
    value   := scalar | "[" [scalar ("," scalar)*] "]" | scalar (";" | "/") scalar ...
    scalar  := true | false | none | null | INT | FLOAT | TEXT

A name is a word of letters, digits, `_` and `-` that is not a number
(`l1_l2`, `1cycle`); names and keys are lower-cased, values are not. Each
family says which names, positional values and keys it takes; `parse` only
reads the syntax, types the values, and refuses malformed text in one line.
Values are typed as Python reads them: `true`/`false` (any case) are bools,
`none`/`null` are `None`, then `int`, then `float` (`1e-4`, `nan`, `inf`),
and anything else is kept as text. Lists are written in brackets
(`axis=[0,1,2]`) or with `;` or `/` (`boundaries=100;200`, which a shell
needs quoted, or `100/200`, which it does not).
"""

import dataclasses
import re

from transferkit.errors import TransferkitError

USAGE = "NAME:VALUE,KEY=VALUE, such as 'max_norm:3,axis=0' or 'sgd:momentum=0.9'"
_NAME = re.compile(r"[a-z0-9_][a-z0-9_\-]*", re.IGNORECASE)
_KEY = re.compile(r"[a-z_][a-z0-9_]*", re.IGNORECASE)
_LIST_SEPARATORS = re.compile("[;/]")


class _Problem(Exception):
    """What is wrong with a piece of a spec; `parse` says where."""


@dataclasses.dataclass(frozen=True)
class Spec:
    """A parsed spec: its name, positional values and key=value settings.

    Attributes:
        text: the spec as given.
        name: the name, lower-cased, or `None` when the spec starts with an
            item (`"flip=horizontal"`).
        args: the positional values, typed, in order.
        kwargs: the key=value settings, typed, in order; keys lower-cased.
        raw_args: the positional values as written (stripped), for families
            that read a value as text (a layer name, say).
        raw_kwargs: the settings' values as written (stripped).
    """

    text: str
    name: str | None
    args: tuple
    kwargs: dict
    raw_args: tuple = ()
    raw_kwargs: dict = dataclasses.field(default_factory=dict)

    def __str__(self):
        return format_spec(self.name, self.args, self.kwargs)


def parse(text, *, what="spec", usage=USAGE, positional=True, require_name=False):
    """Reads a spec string into a `Spec` (see the module docstring for the grammar).

    Args:
        text: the spec, such as `"max_norm:3,axis=[0,1]"`.
        what: what the spec is, for the error messages. Defaults to `"spec"`.
        usage: how to write a good one, for the error messages. Defaults to
            `USAGE`.
        positional: whether positional values are allowed; `False` allows
            key=value settings only. Defaults to `True`.
        require_name: whether the spec must start with a name. Defaults to
            `False`.

    Returns:
        A `Spec`.

    Raises:
        TransferkitError: in one line, naming the bad text and what is accepted.

    Example:

    >>> spec = parse("min_max_norm: 0.5, 2, rate=0.5, axis=[0,1]")
    >>> spec.name, spec.args, spec.kwargs
    ('min_max_norm', (0.5, 2), {'rate': 0.5, 'axis': [0, 1]})
    >>> parse("flip=horizontal,rotate=0.1").name is None
    True
    """
    if not isinstance(text, str):
        raise TransferkitError(f"Invalid {what} {text!r}: expected a string; write {usage}.")
    try:
        return _parse(text, positional, require_name)
    except _Problem as problem:
        raise TransferkitError(f"Invalid {what} {text!r}: {problem}; write {usage}.") from None


def parse_value(text):
    """The typed value of one value text: bool, `None`, int, float, list or text.

    Example:

    >>> [parse_value(t) for t in ("true", "None", "3", "1e-4", "[0,1]", "1e-3;1e-4", "val_loss")]
    [True, None, 3, 0.0001, [0, 1], [0.001, 0.0001], 'val_loss']
    """
    if not isinstance(text, str):
        raise TransferkitError(f"Invalid value {text!r}: expected a string such as '0.1'.")
    try:
        return _value(text.strip())
    except _Problem as problem:
        raise TransferkitError(
            f"Invalid value {text!r}: {problem}; write a number, true, false, none, a word, "
            "or a list such as [0,1] or 100;200."
        ) from None


def format_value(value):
    """The text that `parse_value` reads back as `value` (floats in their shortest form).

    Text that reads as another type (`"true"`, `"3"`) does not round-trip:
    the grammar has no quotes.

    Example:

    >>> [format_value(v) for v in (True, None, 1.0, 1e-05, [100, 200], "val_loss")]
    ['true', 'none', '1', '1e-05', '100;200', 'val_loss']
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return ";".join(format_value(v) for v in value) if value else "[]"
    if isinstance(value, float):
        short = f"{value:g}"
        # `:g` keeps 6 digits; fall back to the exact form where that loses any.
        return short if float(short) == value else repr(value)
    return str(value)


def format_spec(name, args=(), kwargs=None):
    """The spec text of a name, positional values and settings; `parse` reads it back.

    Example:

    >>> format_spec("min_max_norm", (0.5, 2.0), {"axis": [0, 1]})
    'min_max_norm:0.5,2,axis=[0,1]'
    """
    items = [_format_item(v) for v in args]
    items += [f"{key}={_format_item(v)}" for key, v in (kwargs or {}).items()]
    if name is None:
        return ",".join(items)
    return f"{name}:{','.join(items)}" if items else name


def _format_item(value):
    # Brackets, not `;`, inside a spec: they survive a shell unquoted too.
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return format_value(value)


def _parse(text, positional, require_name):
    stripped = text.strip()
    if not stripped:
        raise _Problem("it is empty")
    head, colon, rest = stripped.partition(":")
    if colon and _is_name(head.strip()):
        name, body = head.strip().lower(), rest.strip()
    elif not colon and _is_name(stripped):
        name, body = stripped.lower(), ""
    else:
        name, body = None, stripped
    if name is None and require_name:
        raise _Problem("it does not start with a name")
    args, kwargs, raw_args, raw_kwargs = [], {}, [], {}
    for item in _split(body) if body else ():
        if not item:
            raise _Problem("an item is empty (a stray comma)")
        key, equals, value = (part.strip() for part in item.partition("="))
        if not equals or "[" in key:
            if not positional:
                raise _Problem(f"{item!r} is not a key=value setting")
            if kwargs:
                raise _Problem(f"{item!r} comes after key=value settings (values go first)")
            args.append(_value(item))
            raw_args.append(item)
            continue
        if not key:
            raise _Problem(f"no key before '={value}'")
        if not _KEY.fullmatch(key):
            raise _Problem(f"{key!r} is not a key (letters, digits and _)")
        if not value:
            raise _Problem(f"no value after '{key}='")
        key = key.lower()
        if key in kwargs:
            raise _Problem(f"it sets {key!r} twice")
        kwargs[key] = _value(value)
        raw_kwargs[key] = value
    return Spec(text, name, tuple(args), kwargs, tuple(raw_args), raw_kwargs)


def _is_name(text):
    # `1cycle` is a name; `1e-4`, `3` and `inf` are values.
    if not _NAME.fullmatch(text):
        return False
    try:
        float(text)
    except ValueError:
        return True
    return False


def _split(body):
    """Splits on the commas outside brackets: `"3,axis=[0,1]"` -> `["3", "axis=[0,1]"]`."""
    items, depth, start = [], 0, 0
    for i, char in enumerate(body):
        if char == "[":
            depth += 1
            if depth > 1:
                raise _Problem("lists cannot be nested")
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise _Problem("a ']' closes no '['")
        elif char == "," and depth == 0:
            items.append(body[start:i].strip())
            start = i + 1
    if depth:
        raise _Problem("a '[' is not closed")
    items.append(body[start:].strip())
    return items


def _value(text):
    if not text:
        raise _Problem("a value is empty")
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return [_scalar_item(t.strip()) for t in inner.split(",")] if inner else []
    if _LIST_SEPARATORS.search(text):
        return [_scalar_item(t.strip()) for t in _LIST_SEPARATORS.split(text)]
    return _scalar_item(text)


def _scalar_item(text):
    if not text:
        raise _Problem("a list has an empty item")
    if "[" in text or "]" in text:
        raise _Problem(f"{text!r} has a stray bracket")
    return _scalar(text)


def _scalar(text):
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return text


def is_plain_spec(value):
    """Whether transferkit reads `value` itself, without Keras: `None`, a string, a dict.

    The rest is Keras' to read: an object (a Keras regularizer, constraint or
    optimizer) or the dict `keras.<family>.serialize` returns, which has a
    `"class_name"`. A check that must not import Keras parses the plain
    specs, and leaves the rest to the family's `get`, which imports it.

    Example:

    >>> is_plain_spec("l2:1e-4"), is_plain_spec({"name": "l2", "l2": 1e-4})
    (True, True)
    >>> is_plain_spec({"class_name": "L2", "config": {"l2": 1e-4}})
    False
    """
    if value is None or isinstance(value, str):
        return True
    return isinstance(value, dict) and "class_name" not in value


def deserialized(config, deserialize, expected, what, hint):
    """The Keras object of a serialized dict (`keras.<family>.serialize`), or one line.

    Args:
        config: the dict, with its `"class_name"`.
        deserialize: the family's `keras.<family>.deserialize`.
        expected: the family's base class; Keras hands an unknown class name
            back as it is, which is refused here.
        what: the family in messages, like `"penalty"`.
        hint: what to give instead, like `"give a kind instead, one of l1, l2"`.

    Example:

    >>> import keras
    >>> deserialized(keras.regularizers.serialize(keras.regularizers.L2(1e-4)),
    ...              keras.regularizers.deserialize, keras.regularizers.Regularizer,
    ...              "penalty", "give a kind").l2
    0.0001
    """
    import copy

    try:
        built = deserialize(copy.deepcopy(config))  # a copy: Keras edits the dict it reads
    except (TypeError, ValueError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TransferkitError(f"Invalid {what} {config!r}: {reason}") from None
    if not isinstance(built, expected):
        raise TransferkitError(
            f"Invalid {what} {config!r}: Keras has no {expected.__name__.lower()} class "
            f"{config['class_name']!r}; {hint}."
        )
    return built
