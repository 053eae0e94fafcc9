"""HTTP and WebSocket server and prompt executor of the ComfyUI stand-in.

Routes, events and error shapes follow ComfyUI 0.3.64 (see runpod-comfy's
reference/comfyui-api.md). Fault switches for tests, read from the environment:
  STANDIN_START_DELAY=S      sleep S seconds before listening (slow start)
  STANDIN_EXIT_AT_START=N    print a message and exit with status N before listening
  STANDIN_CRASH_ON=CLASS     exit the process (status 7) when a node of CLASS starts
  STANDIN_DROP_WS=1          close the prompt's WebSocket right after execution_start
  STANDIN_IGNORE_SIGNALS=1   ignore SIGINT and SIGTERM (only SIGKILL stops it)
"""

import base64
import email.parser
import email.policy
import hashlib
import json
import mimetypes
import os
import platform
import queue
import shutil
import signal
import socket
import sqlite3
import sys
import threading
import time
import traceback
import urllib.parse
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import comfyui_version
import folder_paths
import nodes

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
LOG_OUT = sys.stderr


def log(msg):
    print(msg, file=LOG_OUT, flush=True)


def now_ms():
    return int(time.time() * 1000)


# ---------------------------------------------------------------- WebSocket


class WebSocket:
    """WebSocket is one server-side connection: unmasked frames out, masked frames in."""

    def __init__(self, sock):
        self.sock = sock
        self.lock = threading.Lock()
        self.closed = False

    def send_text(self, text):
        self._send(0x1, text.encode("utf-8"))

    def _send(self, opcode, payload):
        n = len(payload)
        if n < 126:
            head = bytes((0x80 | opcode, n))
        elif n < 65536:
            head = bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
        else:
            head = bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")
        with self.lock:
            if self.closed:
                return
            try:
                self.sock.sendall(head + payload)
            except OSError:
                self.closed = True

    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return buf

    def serve(self):
        """serve reads frames until the peer closes; it answers pings and close frames."""
        try:
            while True:
                b0, b1 = self._recv_exact(2)
                opcode = b0 & 0x0F
                n = b1 & 0x7F
                if n == 126:
                    n = int.from_bytes(self._recv_exact(2), "big")
                elif n == 127:
                    n = int.from_bytes(self._recv_exact(8), "big")
                mask = self._recv_exact(4) if b1 & 0x80 else b"\0\0\0\0"
                data = bytes(c ^ mask[i % 4] for i, c in enumerate(self._recv_exact(n)))
                if opcode == 0x8:
                    self._send(0x8, data[:2])
                    break
                if opcode == 0x9:
                    self._send(0xA, data)
        except (ConnectionError, OSError, ValueError):
            pass
        self.drop()

    def drop(self):
        with self.lock:
            self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Sockets:
    def __init__(self):
        self.lock = threading.Lock()
        self.by_id = {}

    def add(self, sid, ws):
        with self.lock:
            old = self.by_id.get(sid)
            self.by_id[sid] = ws
        if old is not None:
            old.drop()

    def remove(self, sid, ws):
        with self.lock:
            if self.by_id.get(sid) is ws:
                del self.by_id[sid]

    def send(self, event, data, sid=None):
        msg = json.dumps({"type": event, "data": data})
        with self.lock:
            targets = [self.by_id[sid]] if sid is not None and sid in self.by_id else ([] if sid is not None else list(self.by_id.values()))
        for ws in targets:
            ws.send_text(msg)

    def get(self, sid):
        with self.lock:
            return self.by_id.get(sid)


# ---------------------------------------------------------------- validation


def _is_link(v):
    return isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], int)


def _input_defs(cls):
    t = cls.INPUT_TYPES()
    return t.get("required", {}), t.get("optional", {})


def _err(kind, message, details="", extra=None):
    return {"type": kind, "message": message, "details": details, "extra_info": extra or {}}


def validate_inputs(prompt, node_id, validated):
    """validate_inputs checks one node and its ancestors; it returns (ok, errors, node_id)
    like ComfyUI's execution.validate_inputs and records results in validated."""
    if node_id in validated:
        return validated[node_id]
    node = prompt[node_id]
    cls = nodes.NODE_CLASS_MAPPINGS[node["class_type"]]
    required, optional = _input_defs(cls)
    inputs = node.get("inputs", {})
    errors = []
    valid = True
    validate_fn = getattr(cls, "VALIDATE_INPUTS", None)
    custom_args = set(validate_fn.__code__.co_varnames[1:validate_fn.__code__.co_argcount]) if validate_fn else set()
    for name, spec in list(required.items()) + list(optional.items()):
        kind = spec[0]
        conf = spec[1] if len(spec) > 1 else {}
        if name not in inputs:
            if name in required:
                errors.append(_err("required_input_missing", "Required input is missing", name, {"input_name": name}))
            continue
        val = inputs[name]
        if _is_link(val):
            src, idx = val
            if src not in prompt:
                errors.append(_err("bad_linked_input", "Bad linked input, must be a length-2 list of [string, int]", f"{name}, {val}", {"input_name": name, "received_value": val}))
                continue
            src_cls = nodes.NODE_CLASS_MAPPINGS.get(prompt[src].get("class_type"))
            rtypes = getattr(src_cls, "RETURN_TYPES", ()) if src_cls else ()
            rtype = rtypes[idx] if 0 <= idx < len(rtypes) else None
            if rtype is None or (not isinstance(kind, list) and kind != "*" and rtype != kind):
                errors.append(_err("return_type_mismatch", "Return type mismatch between linked nodes", f"{name}, received_type({rtype}) mismatch input_type({kind})", {"input_name": name, "received_type": rtype, "linked_node": val}))
                continue
            ok, _, _ = validate_inputs(prompt, src, validated)
            if not ok:
                valid = False
            continue
        if kind == "INT" or kind == "FLOAT":
            try:
                val = int(val) if kind == "INT" else float(val)
                if isinstance(inputs[name], bool):
                    raise ValueError("boolean")
            except (TypeError, ValueError):
                errors.append(_err("invalid_input_type", f"Failed to convert an input value to a {kind} value", f"{name}, {inputs[name]}", {"input_name": name, "received_value": inputs[name]}))
                continue
            inputs[name] = val
            if "min" in conf and val < conf["min"]:
                errors.append(_err("value_smaller_than_min", f"Value {val} smaller than min of {conf['min']}", f"{name}", {"input_name": name, "received_value": val}))
            if "max" in conf and val > conf["max"]:
                errors.append(_err("value_bigger_than_max", f"Value {val} bigger than max of {conf['max']}", f"{name}", {"input_name": name, "received_value": val}))
        elif kind == "STRING":
            if not isinstance(val, str):
                inputs[name] = str(val)
        elif isinstance(kind, list) and name not in custom_args:
            if val not in kind:
                errors.append(_err("value_not_in_list", "Value not in list", f"{name}: '{val}' not in {kind[:20]}", {"input_name": name, "input_config": kind[:20], "received_value": val}))
    if validate_fn is not None and not errors:
        args = {k: inputs[k] for k in custom_args if k in inputs and not _is_link(inputs[k])}
        r = validate_fn(**args)
        if r is not True:
            errors.append(_err("custom_validation_failed", "Custom validation failed for node", f"{', '.join(sorted(args))} - {r}", {"input_name": ", ".join(sorted(args))}))
    if errors:
        valid = False
    validated[node_id] = (valid, errors, node_id)
    return validated[node_id]


def validate_prompt(prompt):
    """validate_prompt returns (ok, error, good_outputs, node_errors) like ComfyUI."""
    if not isinstance(prompt, dict):
        return False, _err("invalid_prompt", "Cannot execute because the prompt is not an object."), [], {}
    outputs = set()
    for nid, node in prompt.items():
        if not isinstance(node, dict) or "class_type" not in node:
            return False, _err("invalid_prompt", "Cannot execute because a node is missing the class_type property.", f"Node ID '#{nid}'", {}), [], {}
        cls = nodes.NODE_CLASS_MAPPINGS.get(node["class_type"])
        if cls is None:
            return False, _err("invalid_prompt", f"Cannot execute because node {node['class_type']} does not exist.", f"Node ID '#{nid}'", {}), [], {}
        if getattr(cls, "OUTPUT_NODE", False):
            outputs.add(nid)
    if not outputs:
        return False, _err("prompt_no_outputs", "Prompt has no outputs", ""), [], {}
    validated = {}
    good = []
    node_errors = {}
    reasons = []
    for out in sorted(outputs):
        ok, _, _ = validate_inputs(prompt, out, validated)
        if ok:
            good.append(out)
            continue
        for nid, (_, errs, _) in validated.items():
            if errs:
                entry = node_errors.setdefault(nid, {"errors": errs, "dependent_outputs": [], "class_type": prompt[nid]["class_type"]})
                if out not in entry["dependent_outputs"]:
                    entry["dependent_outputs"].append(out)
                for e in errs:
                    r = f"{e['message']}: {e['details']}"
                    if r not in reasons:
                        reasons.append(r)
    if not good:
        return False, _err("prompt_outputs_failed_validation", "Prompt outputs failed validation", "\n".join(reasons)), [], node_errors
    return True, None, good, node_errors


# ---------------------------------------------------------------- execution


class Executor:
    def __init__(self, sockets, metadata):
        self.sockets = sockets
        self.metadata = metadata
        self.queue = []  # pending: (number, prompt_id, prompt, extra_data, outputs)
        self.running = None
        self.cv = threading.Condition()
        self.history = {}
        self.cache = {}  # signature -> (outputs, ui)
        self.interrupt_flag = False
        self.number = 0

    def put(self, prompt_id, prompt, extra, outputs):
        with self.cv:
            self.number += 1
            self.queue.append((self.number, prompt_id, prompt, extra, outputs))
            number = self.number
            self.cv.notify_all()
        self.broadcast_status()
        return number

    def remaining(self):
        with self.cv:
            return len(self.queue) + (1 if self.running else 0)

    def broadcast_status(self):
        self.sockets.send("status", {"status": {"exec_info": {"queue_remaining": self.remaining()}}})

    def interrupt(self, prompt_id=None):
        with self.cv:
            if self.running and (prompt_id is None or self.running[1] == prompt_id):
                self.interrupt_flag = True

    def loop(self):
        while True:
            with self.cv:
                while not self.queue:
                    self.cv.wait()
                item = self.queue.pop(0)
                self.running = item
                self.interrupt_flag = False
            try:
                self.execute(*item)
            except Exception:  # noqa: BLE001
                log("stand-in executor failure:\n" + traceback.format_exc())
            with self.cv:
                self.running = None
            self.broadcast_status()

    def signature(self, prompt, nid, memo):
        if nid in memo:
            return memo[nid]
        node = prompt[nid]
        cls = nodes.NODE_CLASS_MAPPINGS[node["class_type"]]
        parts = [node["class_type"]]
        for k in sorted(node.get("inputs", {})):
            v = node["inputs"][k]
            parts.append([k, [self.signature(prompt, v[0], memo), v[1]] if _is_link(v) else v])
        changed = getattr(cls, "IS_CHANGED", None)
        if changed is not None:
            try:
                args = {k: v for k, v in node.get("inputs", {}).items() if not _is_link(v)}
                parts.append(["is_changed", str(changed(**args))])
            except Exception as e:  # noqa: BLE001
                parts.append(["is_changed", repr(e)])
        sig = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
        memo[nid] = sig
        return sig

    def execute(self, number, prompt_id, prompt, extra, outputs):
        sid = extra.get("client_id")
        messages = []

        def event(kind, data, broadcast=False):
            data = dict(data)
            if kind in ("execution_start", "execution_cached", "execution_success", "execution_error", "execution_interrupted"):
                messages.append([kind, data])
            self.sockets.send(kind, data, None if broadcast else sid) if (sid or broadcast) else None

        event("execution_start", {"prompt_id": prompt_id, "timestamp": now_ms()})
        if os.environ.get("STANDIN_DROP_WS") == "1" and sid:
            ws = self.sockets.get(sid)
            if ws is not None:
                log("stand-in: dropping the WebSocket of " + sid)
                ws.drop()
        order = []
        seen = set()

        def visit(n):
            if n in seen:
                return
            seen.add(n)
            for v in prompt[n].get("inputs", {}).values():
                if _is_link(v):
                    visit(v[0])
            order.append(n)

        for o in outputs:
            visit(o)
        memo = {}
        sigs = {n: self.signature(prompt, n, memo) for n in order}
        cached = [n for n in order if sigs[n] in self.cache]
        event("execution_cached", {"nodes": cached, "prompt_id": prompt_id, "timestamp": now_ms()})
        results = {}
        ui_outputs = {}
        meta = {}
        status = "success"
        used = set()
        for n in order:
            node = prompt[n]
            cls = nodes.NODE_CLASS_MAPPINGS[node["class_type"]]
            used.add(sigs[n])
            if n in cached:
                results[n], ui = self.cache[sigs[n]]
                if ui is not None:
                    ui_outputs[n] = ui
                    meta[n] = {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n}
                    event("executed", {"node": n, "display_node": n, "output": ui, "prompt_id": prompt_id})
                continue
            if self.interrupt_flag:
                event("execution_interrupted", {"prompt_id": prompt_id, "node_id": n, "node_type": node["class_type"], "executed": list(results), "timestamp": now_ms()}, broadcast=True)
                status = "error"
                break
            event("executing", {"node": n, "display_node": n, "prompt_id": prompt_id})
            if os.environ.get("STANDIN_CRASH_ON") == node["class_type"]:
                log(f"stand-in: crashing on purpose in node {n} ({node['class_type']})")
                os._exit(7)
            kwargs = {}
            for k, v in node.get("inputs", {}).items():
                kwargs[k] = results[v[0]][v[1]] if _is_link(v) else v

            def progress(value, total, n=n):
                event("progress", {"value": value, "max": total, "prompt_id": prompt_id, "node": n})

            nodes.CTX = nodes.Context(progress, lambda: self.interrupt_flag, prompt, self.metadata)
            try:
                obj = cls()
                out = getattr(obj, cls.FUNCTION)(**kwargs)
            except nodes.InterruptProcessingException:
                event("execution_interrupted", {"prompt_id": prompt_id, "node_id": n, "node_type": node["class_type"], "executed": list(results), "timestamp": now_ms()}, broadcast=True)
                status = "error"
                break
            except Exception as e:  # noqa: BLE001
                log(f"!!! Exception during processing !!! {e}\n{traceback.format_exc()}")
                event("execution_error", {
                    "prompt_id": prompt_id, "node_id": n, "node_type": node["class_type"], "executed": list(results),
                    "exception_message": str(e), "exception_type": type(e).__module__ + "." + type(e).__name__ if type(e).__module__ != "builtins" else type(e).__name__,
                    "traceback": traceback.format_tb(e.__traceback__), "current_inputs": {}, "current_outputs": {}, "timestamp": now_ms()})
                status = "error"
                break
            finally:
                nodes.CTX = None
            ui = None
            if isinstance(out, dict):
                ui = out.get("ui")
                out = out.get("result", ())
            results[n] = out
            self.cache[sigs[n]] = (out, ui)
            if ui is not None:
                ui_outputs[n] = ui
                meta[n] = {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n}
                event("executed", {"node": n, "display_node": n, "output": ui, "prompt_id": prompt_id})
        if status == "success":
            event("execution_success", {"prompt_id": prompt_id, "timestamp": now_ms()})
        # the classic cache keeps what the last prompt used
        self.cache = {k: v for k, v in self.cache.items() if k in used}
        with self.cv:
            self.history[prompt_id] = {
                "prompt": [number, prompt_id, prompt, extra, outputs],
                "outputs": ui_outputs,
                "status": {"status_str": status, "completed": status == "success", "messages": messages},
                "meta": meta,
            }
        if sid:
            self.sockets.send("executing", {"node": None, "prompt_id": prompt_id}, sid)


# ---------------------------------------------------------------- HTTP


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm and
    # the client's delayed ACK add 40 ms to many responses and WebSocket frames.
    disable_nagle_algorithm = True
    server_version = "ComfyUI-stand-in"

    def setup(self):
        super().setup()
        # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm
        # and the client's delayed ACK add ~40 ms to every small response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt, *a):
        if self.server.verbose:
            log("http: " + fmt % a)

    # helpers
    def send_json(self, obj, status=200):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_text(self, text, status):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n > self.server.max_upload:
            self.send_text("request too large", 413)
            return None
        return self.rfile.read(n) if n else b""

    def route(self):
        u = urllib.parse.urlsplit(self.path)
        path = u.path
        if path.startswith("/api/"):
            path = path[4:]
        return path, urllib.parse.parse_qs(u.query)

    def origin_ok(self):
        origin = self.headers.get("Origin")
        if origin is None or self.server.cors:
            return True
        host = self.headers.get("Host", "")
        loopback = host.split(":")[0] in ("127.0.0.1", "localhost", "[::1]")
        return not loopback or urllib.parse.urlsplit(origin).netloc == host

    def do_GET(self):
        if not self.origin_ok():
            return self.send_text("Forbidden", 403)
        path, q = self.route()
        ex = self.server.executor
        if path == "/ws":
            return self.websocket(q)
        if path == "/prompt":
            return self.send_json({"exec_info": {"queue_remaining": ex.remaining()}})
        if path == "/queue":
            with ex.cv:
                running = [list(ex.running)] if ex.running else []
                pending = [list(i) for i in ex.queue]
            return self.send_json({"queue_running": running, "queue_pending": pending})
        if path == "/history":
            with ex.cv:
                items = list(ex.history.items())
            max_items = int(q.get("max_items", ["0"])[0] or 0)
            offset = int(q.get("offset", ["0"])[0] or 0)
            items = items[::-1][offset:]
            if max_items:
                items = items[:max_items]
            return self.send_json(dict(items))
        if path.startswith("/history/"):
            pid = path[len("/history/"):]
            with ex.cv:
                entry = ex.history.get(pid)
            return self.send_json({pid: entry} if entry else {})
        if path == "/view":
            return self.view(q)
        if path == "/system_stats":
            return self.send_json({"system": {"os": os.name, "ram_total": 0, "ram_free": 0, "comfyui_version": comfyui_version.__version__,
                                              "required_frontend_version": "", "python_version": sys.version, "pytorch_version": "none (stand-in)",
                                              "embedded_python": False, "argv": sys.argv},
                                   "devices": [{"name": "cpu", "type": "cpu", "index": None, "vram_total": 0, "vram_free": 0, "torch_vram_total": 0, "torch_vram_free": 0}]})
        if path == "/object_info" or path.startswith("/object_info/"):
            names = list(nodes.NODE_CLASS_MAPPINGS)
            if path.startswith("/object_info/"):
                names = [n for n in names if n == path[len("/object_info/"):]]
            return self.send_json({n: object_info(n) for n in names})
        if path == "/models":
            return self.send_json(sorted(k for k in folder_paths.folder_names_and_paths if k != "custom_nodes"))
        if path.startswith("/models/"):
            folder = path[len("/models/"):]
            if folder not in folder_paths.folder_names_and_paths:
                return self.send_text("404: Not Found", 404)
            return self.send_json(folder_paths.get_filename_list(folder))
        if path == "/":
            return self.send_text("ComfyUI stand-in\n", 200)
        return self.send_text("404: Not Found", 404)

    def do_POST(self):
        if not self.origin_ok():
            return self.send_text("Forbidden", 403)
        path, _ = self.route()
        body = self.body()
        if body is None:
            return
        ex = self.server.executor
        if path == "/prompt":
            return self.post_prompt(body)
        if path == "/interrupt":
            pid = None
            if body:
                try:
                    pid = json.loads(body).get("prompt_id")
                except (ValueError, AttributeError):
                    pid = None
            ex.interrupt(pid)
            return self.send_text("", 200)
        if path == "/queue":
            req = json.loads(body or b"{}")
            with ex.cv:
                if req.get("clear"):
                    ex.queue.clear()
                if "delete" in req:
                    ex.queue = [i for i in ex.queue if i[1] not in req["delete"]]
            ex.broadcast_status()
            return self.send_text("", 200)
        if path == "/history":
            req = json.loads(body or b"{}")
            with ex.cv:
                if req.get("clear"):
                    ex.history.clear()
                for pid in req.get("delete", []):
                    ex.history.pop(pid, None)
            return self.send_text("", 200)
        if path == "/free":
            req = json.loads(body or b"{}")
            if req.get("free_memory"):
                ex.cache = {}
            return self.send_text("", 200)
        if path == "/upload/image":
            return self.upload(body)
        return self.send_text("404: Not Found", 404)

    def post_prompt(self, body):
        try:
            req = json.loads(body)
        except ValueError:
            return self.send_json({"error": _err("invalid_prompt", "Invalid JSON"), "node_errors": {}}, 400)
        if "prompt" not in req:
            return self.send_json({"error": _err("no_prompt", "No prompt provided", "No prompt provided"), "node_errors": {}}, 400)
        prompt = req["prompt"]
        ok, error, outputs, node_errors = validate_prompt(prompt)
        if not ok:
            log(f"invalid prompt: {error['message']}")
            return self.send_json({"error": error, "node_errors": node_errors}, 400)
        pid = str(req.get("prompt_id") or uuid.uuid4())
        extra = dict(req.get("extra_data", {}))
        if "client_id" in req:
            extra["client_id"] = req["client_id"]
        number = self.server.executor.put(pid, prompt, extra, outputs)
        return self.send_json({"prompt_id": pid, "number": number, "node_errors": node_errors})

    def view(self, q):
        name = q.get("filename", [""])[0]
        kind = q.get("type", ["output"])[0]
        sub = q.get("subfolder", [""])[0]
        for k in ("output", "input", "temp"):
            if name.endswith(f" [{k}]"):
                kind, name = k, name[: -len(k) - 3]
        if not name or name.startswith("/") or ".." in name:
            return self.send_text("400: Bad Request", 400)
        base = folder_paths.get_directory_by_type(kind)
        if base is None:
            return self.send_text("400: Bad Request", 400)
        base = os.path.abspath(base)
        d = os.path.abspath(os.path.join(base, sub))
        if os.path.commonpath((base, d)) != base:
            return self.send_text("403: Forbidden", 403)
        path = os.path.join(d, os.path.basename(name))
        if not os.path.isfile(path):
            return self.send_text("404: Not Found", 404)
        ctype = mimetypes.guess_type(path)[0] or "application/octet-stream"
        size = os.path.getsize(path)
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(size))
        self.send_header("Content-Disposition", f'filename="{os.path.basename(name)}"')
        self.end_headers()
        with open(path, "rb") as f:
            shutil.copyfileobj(f, self.wfile, 1 << 20)

    def upload(self, body):
        ctype = self.headers.get("Content-Type", "")
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body)
        fields = {}
        image = None
        if msg.is_multipart():
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if name == "image" and part.get_filename():
                    image = (part.get_filename(), part.get_payload(decode=True))
                elif name:
                    fields[name] = part.get_payload(decode=True).decode()
        if image is None:
            return self.send_text("400: Bad Request", 400)
        kind = fields.get("type", "input") or "input"
        base = folder_paths.get_directory_by_type(kind)
        if base is None:
            return self.send_text("400: Bad Request", 400)
        base = os.path.abspath(base)
        sub = fields.get("subfolder", "")
        d = os.path.abspath(os.path.join(base, sub))
        if os.path.commonpath((base, d)) != base:
            return self.send_text("400: Bad Request", 400)
        filename = os.path.basename(image[0])
        if not filename or filename.startswith(".") and filename.strip(".") == "":
            return self.send_text("400: Bad Request", 400)
        os.makedirs(d, exist_ok=True)
        overwrite = fields.get("overwrite", "").lower() in ("true", "1")
        path = os.path.join(d, filename)
        if not overwrite:
            stem, ext = os.path.splitext(filename)
            i = 1
            while os.path.exists(path):
                with open(path, "rb") as f:
                    if f.read() == image[1]:
                        break
                filename = f"{stem} ({i}){ext}"
                path = os.path.join(d, filename)
                i += 1
        with open(path, "wb") as f:
            f.write(image[1])
        return self.send_json({"name": filename, "subfolder": sub, "type": kind})

    def websocket(self, q):
        key = self.headers.get("Sec-WebSocket-Key")
        if self.headers.get("Upgrade", "").lower() != "websocket" or not key:
            return self.send_text("400: expected a WebSocket upgrade", 400)
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(HTTPStatus.SWITCHING_PROTOCOLS)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        sid = q.get("clientId", [""])[0] or uuid.uuid4().hex
        ws = WebSocket(self.connection)
        sockets = self.server.sockets
        sockets.add(sid, ws)
        ws.send_text(json.dumps({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": self.server.executor.remaining()}}, "sid": sid}}))
        ex = self.server.executor
        with ex.cv:
            running = ex.running
        if running and running[3].get("client_id") == sid:
            ws.send_text(json.dumps({"type": "executing", "data": {"node": None}}))
        ws.serve()
        sockets.remove(sid, ws)
        self.close_connection = True


def object_info(name):
    cls = nodes.NODE_CLASS_MAPPINGS[name]
    t = cls.INPUT_TYPES()
    rt = list(getattr(cls, "RETURN_TYPES", ()))
    return {"input": t, "input_order": {k: list(v) for k, v in t.items()}, "output": rt, "output_is_list": [False] * len(rt),
            "output_name": rt, "name": name, "display_name": name, "description": "", "python_module": "nodes",
            "category": getattr(cls, "CATEGORY", ""), "output_node": bool(getattr(cls, "OUTPUT_NODE", False))}


# ---------------------------------------------------------------- start-up


def _open_database(url, default_path):
    if url is None:
        url = "sqlite:///" + default_path
    if not url.startswith("sqlite:///"):
        log(f"Failed to initialize database: unsupported URL {url}")
        return
    path = url[len("sqlite:///"):]
    try:
        if path != ":memory:":
            os.makedirs(os.path.dirname(path), exist_ok=True)
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE IF NOT EXISTS alembic_version (version_num TEXT)")
        db.commit()
        db.close()
    except (OSError, sqlite3.Error) as e:
        log(f"Failed to initialize database. Please ensure you have installed the latest requirements. {e}")


def _raise_interrupt(*_):
    raise KeyboardInterrupt()


def main(args):
    global LOG_OUT
    if args.log_stdout:
        LOG_OUT = sys.stdout
    if os.environ.get("STANDIN_IGNORE_SIGNALS") == "1":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _raise_interrupt)
    base = os.path.abspath(args.base_directory) if args.base_directory else folder_paths.base_path
    folder_paths.output_directory = os.path.abspath(args.output_directory) if args.output_directory else os.path.join(base, "output")
    folder_paths.input_directory = os.path.abspath(args.input_directory) if args.input_directory else os.path.join(base, "input")
    folder_paths.temp_directory = os.path.join(os.path.abspath(args.temp_directory) if args.temp_directory else base, "temp")
    folder_paths.user_directory = os.path.abspath(args.user_directory) if args.user_directory else os.path.join(base, "user")
    if args.base_directory:
        for k in ("checkpoints", "loras", "vae"):
            folder_paths.folder_names_and_paths[k] = [os.path.join(base, "models", k)]
        folder_paths.folder_names_and_paths["custom_nodes"] = [os.path.join(base, "custom_nodes")]
    log(f"ComfyUI stand-in {comfyui_version.__version__}, Python {platform.python_version()}")
    log("** Platform: " + platform.system())
    log("** Python executable: " + sys.executable)
    if args.output_directory:
        log(f"Setting output directory to: {folder_paths.output_directory}")
    try:
        os.makedirs(folder_paths.input_directory, exist_ok=True)
    except OSError as e:
        log(f"Failed to create input directory {folder_paths.input_directory}: {e}")
    # ComfyUI removes and recreates the temp dir at start: a crash when it cannot.
    shutil.rmtree(folder_paths.temp_directory, ignore_errors=True)
    os.makedirs(folder_paths.temp_directory, exist_ok=True)
    os.makedirs(folder_paths.user_directory, exist_ok=True)
    _open_database(args.database_url, os.path.join(folder_paths.base_path, "user", "comfyui.db"))
    for group in args.extra_model_paths_config or []:
        for p in group:
            folder_paths.load_extra_path_config(p, log)
    # As main.py's execute_prestartup_script: os.listdir of every custom_nodes path as
    # configured (a relative one against the working directory); a missing one is fatal.
    if not args.disable_all_custom_nodes or args.whitelist_custom_nodes:
        for path in folder_paths.get_folder_paths("custom_nodes"):
            for entry in os.listdir(path):
                script = os.path.join(path, entry, "prestartup_script.py")
                if not entry.endswith(".disabled") and os.path.isfile(script):
                    log(f"stand-in: found prestartup script {script}")
    delay = float(os.environ.get("STANDIN_START_DELAY", "0") or 0)
    if delay:
        log(f"stand-in: slow start, sleeping {delay} s")
        time.sleep(delay)
    code = os.environ.get("STANDIN_EXIT_AT_START")
    if code:
        log("stand-in: exiting at start on purpose (STANDIN_EXIT_AT_START)")
        return int(code)
    nodes.load_custom_nodes(log, args.disable_all_custom_nodes, args.whitelist_custom_nodes)
    sockets = Sockets()
    executor = Executor(sockets, not args.disable_metadata)
    host = args.listen.split(",")[0]
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    ThreadingHTTPServer.address_family = family
    httpd = ThreadingHTTPServer((host, args.port), Handler)
    httpd.executor = executor
    httpd.sockets = sockets
    httpd.verbose = args.verbose == "DEBUG"
    httpd.cors = args.enable_cors_header
    httpd.max_upload = int(args.max_upload_size * 1024 * 1024)
    threading.Thread(target=executor.loop, daemon=True).start()
    log("Starting server\n")
    log(f"To see the GUI go to: http://{host}:{httpd.server_address[1]}")
    try:
        httpd.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        log("\nStopped server")
    finally:
        shutil.rmtree(folder_paths.temp_directory, ignore_errors=True)
    return 0
