"""A strict reader of the YAML that extra_model_paths.yaml files use, giving what PyYAML's
yaml.safe_load (YAML 1.1) gives for it. The stand-in has only the standard library.

Supported: comments, a top-level block mapping whose values are null, {} or a block mapping
of scalars; scalars plain (null, YAML 1.1 booleans, integers, strings), single-quoted,
double-quoted (with YAML's escapes) or literal blocks (|, |-). Anything else is refused with
its line, as PyYAML would refuse a broken file; a character PyYAML does not accept in a stream
(a control character other than tab and line breaks) is refused too. A document of only
comments is None.
"""

import re

_BOOL = {
    **{k: True for k in ("yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON")},
    **{k: False for k in ("no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF")},
}
_INT = re.compile(r"^[-+]?(0|[1-9][0-9_]*)$")
_ESC = {
    "0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v", "f": "\f",
    "r": "\r", "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\", "N": "\x85", "_": "\xa0",
    "L": "\u2028", "P": "\u2029",
}
_HEX = {"x": 2, "u": 4, "U": 8}


class YAMLError(ValueError):
    pass


def _printable(ch):
    o = ord(ch)
    return (ch in "\t\n\r" or 0x20 <= o <= 0x7E or o == 0x85 or 0xA0 <= o <= 0xD7FF
            or 0xE000 <= o <= 0xFFFD or 0x10000 <= o <= 0x10FFFF)


def _double(text, where):
    """Parses a double-quoted scalar at the start of text; returns (value, rest)."""
    out = []
    i = 1
    while i < len(text):
        ch = text[i]
        if ch == '"':
            return "".join(out), text[i + 1:]
        if ch == "\\":
            i += 1
            if i >= len(text):
                break
            e = text[i]
            if e in _ESC:
                out.append(_ESC[e])
            elif e in _HEX:
                digits = text[i + 1:i + 1 + _HEX[e]]
                if len(digits) != _HEX[e] or not re.fullmatch(r"[0-9A-Fa-f]+", digits):
                    raise YAMLError(f"{where}: bad escape \\{e}{digits}")
                out.append(chr(int(digits, 16)))
                i += _HEX[e]
            else:
                raise YAMLError(f"{where}: unknown escape \\{e}")
        else:
            out.append(ch)
        i += 1
    raise YAMLError(f"{where}: unterminated double-quoted scalar (the stand-in reads one line)")


def _single(text, where):
    out = []
    i = 1
    while i < len(text):
        ch = text[i]
        if ch == "'":
            if text[i + 1:i + 2] == "'":
                out.append("'")
                i += 2
                continue
            return "".join(out), text[i + 1:]
        out.append(ch)
        i += 1
    raise YAMLError(f"{where}: unterminated single-quoted scalar (the stand-in reads one line)")


def _rest_is_comment(rest, where):
    rest = rest.strip(" ")
    if rest and not rest.startswith("#"):
        raise YAMLError(f"{where}: unexpected {rest!r} after a scalar")


def _plain(text, where):
    text = re.split(r"\s#", text, maxsplit=1)[0].strip(" ")
    if text[:1] in ("[", "{", "&", "*", "!", "|", ">", "%", "@", "`", ",") or text.startswith(("- ", "? ")):
        raise YAMLError(f"{where}: the stand-in does not read {text!r}")
    if ": " in text or text.endswith(":"):
        raise YAMLError(f"{where}: a plain scalar may not hold ': ' ({text!r})")
    if text in ("", "~", "null", "Null", "NULL"):
        return None
    if text in _BOOL:
        return _BOOL[text]
    if _INT.match(text):
        return int(text.replace("_", ""))
    return text


def _scalar(text, where):
    """A scalar value (after 'key: '): returns its value."""
    if text.startswith('"'):
        v, rest = _double(text, where)
        _rest_is_comment(rest, where)
        return v
    if text.startswith("'"):
        v, rest = _single(text, where)
        _rest_is_comment(rest, where)
        return v
    return _plain(text, where)


def _key(line, where):
    """Splits 'key: rest' into (key, rest)."""
    if line.startswith('"'):
        k, rest = _double(line, where)
    elif line.startswith("'"):
        k, rest = _single(line, where)
    else:
        m = re.match(r"^([^:#\s][^:]*?)\s*:(\s|$)", line)
        if not m:
            raise YAMLError(f"{where}: expected 'key: value', got {line!r}")
        k, rest = m.group(1), line[m.end(1):].lstrip(" ")
        k = _plain(k, where)
        return k, rest[1:].strip(" ")
    rest = rest.lstrip(" ")
    if not rest.startswith(":") or (len(rest) > 1 and rest[1] != " "):
        raise YAMLError(f"{where}: expected ':' after the key")
    return k, rest[1:].strip(" ")


def safe_load(text, name="<yaml>"):
    for n, ch in enumerate(text):
        if not _printable(ch):
            line = text.count("\n", 0, n) + 1
            raise YAMLError(f"{name}:{line}: unacceptable character #x{ord(ch):04x}: special characters are not allowed")
    lines = text.split("\n")
    doc = None
    section = None  # (key, indent) of the mapping being filled
    i = 0
    while i < len(lines):
        raw = lines[i].rstrip("\r")
        where = f"{name}:{i + 1}"
        i += 1
        stripped = raw.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("\t") or raw[:len(raw) - len(stripped)].count("\t"):
            raise YAMLError(f"{where}: tabs are not allowed in indentation")
        indent = len(raw) - len(stripped)
        if raw.strip() in ("---", "..."):
            raise YAMLError(f"{where}: the stand-in reads one document without markers")
        if indent == 0:
            if doc is None:
                doc = {}
            key, rest = _key(stripped, where)
            rest_nc = re.split(r"(^|\s)#", rest, maxsplit=1)[0].strip(" ")
            if rest_nc == "{}":
                doc[key] = {}
                section = None
            elif rest_nc == "":
                doc[key] = None
                section = [key, None]
            else:
                doc[key] = _scalar(rest, where)
                section = None
            continue
        if section is None:
            raise YAMLError(f"{where}: unexpected indentation")
        key0, sindent = section
        if sindent is None:
            section[1] = sindent = indent
            doc[key0] = {}
        elif indent != sindent:
            raise YAMLError(f"{where}: bad indentation ({indent} spaces, the mapping has {sindent})")
        key, rest = _key(stripped, where)
        m = re.match(r"^\|(-?)\s*(#.*)?$", rest)
        if m:
            block = []
            bindent = None
            while i < len(lines):
                b = lines[i].rstrip("\r")
                bs = b.lstrip(" ")
                bi = len(b) - len(bs)
                if bs and bi <= sindent:
                    break
                if bs and bindent is None:
                    bindent = bi
                if bs and bi < bindent:
                    raise YAMLError(f"{name}:{i + 1}: bad indentation in a literal block")
                block.append(b[bindent:] if bs else "")
                i += 1
            while block and block[-1] == "":
                block.pop()
            value = "\n".join(block)
            if block and m.group(1) != "-":
                value += "\n"
            doc[key0][key] = value
            continue
        doc[key0][key] = _scalar(rest, where)
    return doc
