"""Toy nodes of the stand-in, written in ComfyUI's node convention (INPUT_TYPES, RETURN_TYPES,
FUNCTION, OUTPUT_NODE), and the loader for custom nodes."""

import hashlib
import importlib.util
import json
import math
import os
import random
import re
import struct
import sys
import time
import wave

import folder_paths
import png
from png import Image


class InterruptProcessingException(Exception):
    """Raised inside a node when the running prompt is interrupted."""


class Context:
    """Context is what the executor gives a running node: progress reporting, the interrupt
    flag and the prompt (for PNG metadata)."""

    def __init__(self, progress, interrupted, prompt, metadata):
        self.progress = progress
        self.interrupted = interrupted
        self.prompt = prompt
        self.metadata = metadata


CTX = None  # set by the executor while a node runs


def _save_path(prefix, output_dir):
    """_save_path mirrors ComfyUI's folder_paths.get_save_image_path: prefix may carry a
    subfolder; the counter is one more than the largest existing <name>_NNNNN_ file."""
    subfolder = os.path.dirname(os.path.normpath(prefix))
    name = os.path.basename(os.path.normpath(prefix))
    full = os.path.join(output_dir, subfolder)
    if os.path.commonpath((output_dir, os.path.abspath(full))) != output_dir:
        raise ValueError(f"Saving image outside the output folder is not allowed. full_output_folder: {os.path.abspath(full)} output_dir: {output_dir}")
    os.makedirs(full, exist_ok=True)
    pat = re.compile(re.escape(name) + r"_(\d+)_")
    counter = 0
    for f in os.listdir(full):
        m = pat.match(f)
        if m:
            counter = max(counter, int(m.group(1)))
    return full, name, counter + 1, subfolder


class EmptyImage:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "width": ("INT", {"default": 512, "min": 1, "max": 16384}),
            "height": ("INT", {"default": 512, "min": 1, "max": 16384}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 64}),
            "color": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFF}),
        }}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "generate"
    CATEGORY = "image"

    def generate(self, width, height, batch_size=1, color=0):
        px = bytes(((color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF))
        return ([Image(width, height, 3, px * (width * height)) for _ in range(batch_size)],)


class StandInNoiseImage:
    """Random pixels from a seed: incompressible, so width*height*3 bytes makes the PNG size."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "width": ("INT", {"default": 64, "min": 1, "max": 16384}),
            "height": ("INT", {"default": 64, "min": 1, "max": 16384}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF}),
        }}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "generate"
    CATEGORY = "stand-in"

    def generate(self, width, height, seed):
        return ([Image(width, height, 3, random.Random(seed).randbytes(width * height * 3))],)


class LoadImage:
    @classmethod
    def INPUT_TYPES(cls):
        files = []
        d = folder_paths.input_directory
        if os.path.isdir(d):
            files = sorted(f for f in os.listdir(d) if os.path.isfile(os.path.join(d, f)))
        return {"required": {"image": (files, {"image_upload": True})}}

    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load_image"
    CATEGORY = "image"

    def load_image(self, image):
        path = _annotated_path(image)
        with open(path, "rb") as f:
            img = png.decode(f.read())
        return ([img], None)

    @classmethod
    def IS_CHANGED(cls, image):
        with open(_annotated_path(image), "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    @classmethod
    def VALIDATE_INPUTS(cls, image):
        try:
            p = _annotated_path(image)
        except ValueError as e:
            return str(e)
        if not os.path.isfile(p):
            return f"Invalid image file: {image}"
        return True


def _annotated_path(name):
    base = folder_paths.input_directory
    if name.endswith("]"):
        for kind in ("input", "output", "temp"):
            if name.endswith(f" [{kind}]"):
                base = folder_paths.get_directory_by_type(kind)
                name = name[: -len(kind) - 3]
    p = os.path.abspath(os.path.join(base, name))
    if os.path.commonpath((os.path.abspath(base), p)) != os.path.abspath(base):
        raise ValueError(f"Invalid image file: {name}")
    return p


class SaveImage:
    def __init__(self):
        self.output_dir = folder_paths.output_directory
        self.type = "output"
        self.compress_level = 4

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE",),
            "filename_prefix": ("STRING", {"default": "ComfyUI"}),
        }}

    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    CATEGORY = "image"

    def save_images(self, images, filename_prefix="ComfyUI"):
        full, name, counter, subfolder = _save_path(filename_prefix, os.path.abspath(self.output_dir))
        results = []
        for img in images:
            meta = None
            if CTX is not None and CTX.metadata:
                meta = {"prompt": json.dumps(CTX.prompt)}
            file = f"{name}_{counter:05}_.png"
            with open(os.path.join(full, file), "wb") as f:
                f.write(png.encode(img, meta, self.compress_level))
            results.append({"filename": file, "subfolder": subfolder, "type": self.type})
            counter += 1
        return {"ui": {"images": results}}


class PreviewImage(SaveImage):
    def __init__(self):
        self.output_dir = folder_paths.temp_directory
        self.type = "temp"
        self.compress_level = 1

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",)}}

    def save_images(self, images):
        return SaveImage.save_images(self, images, "ComfyUI_temp_" + "".join(random.choice("abcdefghijklmnopqrstupvxyz") for _ in range(5)))


class StandInText:
    """Returns a text output (ui "text"), like PreviewAny / ShowText."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"default": "", "multiline": True})},
                "optional": {"images": ("IMAGE",)}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "show"
    OUTPUT_NODE = True
    CATEGORY = "stand-in"

    def show(self, text, images=None):
        if images is not None:
            text = text + "".join(f" {i.width}x{i.height}" for i in images)
        return {"ui": {"text": [text]}, "result": (text,)}


class StandInSaveAudio:
    """Writes a sine tone as a WAV file (ui "audio"), like SaveAudio."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "seconds": ("FLOAT", {"default": 0.1, "min": 0.01, "max": 60}),
            "frequency": ("FLOAT", {"default": 440.0, "min": 1, "max": 20000}),
            "filename_prefix": ("STRING", {"default": "audio/ComfyUI"}),
        }}

    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True
    CATEGORY = "stand-in"

    def save(self, seconds, frequency, filename_prefix):
        full, name, counter, subfolder = _save_path(filename_prefix, os.path.abspath(folder_paths.output_directory))
        file = f"{name}_{counter:05}_.wav"
        rate = 8000
        frames = b"".join(struct.pack("<h", int(12000 * math.sin(2 * math.pi * frequency * i / rate))) for i in range(int(seconds * rate)))
        with wave.open(os.path.join(full, file), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(frames)
        return {"ui": {"audio": [{"filename": file, "subfolder": subfolder, "type": "output"}]}}


class StandInFail:
    """Always raises: gives an execution_error."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"message": ("STRING", {"default": "stand-in failure"})},
                "optional": {"images": ("IMAGE",)}}

    RETURN_TYPES = ()
    FUNCTION = "fail"
    OUTPUT_NODE = True
    CATEGORY = "stand-in"

    def fail(self, message, images=None):
        raise RuntimeError(message)


class StandInSleep:
    """Sleeps `seconds` in `steps` steps with a progress event each; passes images through."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "seconds": ("FLOAT", {"default": 1.0, "min": 0, "max": 3600}),
            "steps": ("INT", {"default": 4, "min": 1, "max": 10000}),
        }, "optional": {"images": ("IMAGE",)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "sleep"
    CATEGORY = "stand-in"

    def sleep(self, seconds, steps, images=None):
        for k in range(1, steps + 1):
            end = time.monotonic() + seconds / steps
            while time.monotonic() < end:
                if CTX is not None and CTX.interrupted():
                    raise InterruptProcessingException()
                time.sleep(min(0.02, max(0, end - time.monotonic())))
            if CTX is not None:
                CTX.progress(k, steps)
        if images is None:
            images = [Image(8, 8, 3, b"\x80" * 192)]
        return (images,)


NODE_CLASS_MAPPINGS = {
    "EmptyImage": EmptyImage,
    "StandInNoiseImage": StandInNoiseImage,
    "LoadImage": LoadImage,
    "SaveImage": SaveImage,
    "PreviewImage": PreviewImage,
    "StandInText": StandInText,
    "StandInSaveAudio": StandInSaveAudio,
    "StandInFail": StandInFail,
    "StandInSleep": StandInSleep,
}

NODE_DISPLAY_NAME_MAPPINGS = {}


def load_custom_nodes(log, disabled=False, whitelist=()):
    """load_custom_nodes imports every module of every custom_nodes folder and merges its
    NODE_CLASS_MAPPINGS; a failing import is logged and skipped, as ComfyUI does."""
    base = set(NODE_CLASS_MAPPINGS)
    times = []
    # As nodes.py's init_external_custom_nodes: os.listdir(os.path.realpath(path)) of every
    # custom_nodes path, a FileNotFoundError (ComfyUI does not start) when one is missing; a
    # relative path is relative to the working directory.
    for root in folder_paths.get_folder_paths("custom_nodes"):
        for entry in sorted(os.listdir(os.path.realpath(root))):
            path = os.path.join(root, entry)
            if entry == "__pycache__" or entry.endswith(".disabled"):
                continue
            if os.path.isfile(path) and not entry.endswith(".py"):
                continue
            if disabled and entry not in whitelist:
                log(f"Skipping {entry} due to disable_all_custom_nodes and whitelist_custom_nodes")
                continue
            start = time.perf_counter()
            ok = _load_module(path, base, log)
            times.append((time.perf_counter() - start, path, ok))
    if times:
        log("\nImport times for custom nodes:")
        for t, path, ok in times:
            log(f"{t:6.1f} seconds{'' if ok else ' (IMPORT FAILED)'}: {path}")
        log("")


def _load_module(path, ignore, log):
    try:
        if os.path.isfile(path):
            name = os.path.splitext(os.path.basename(path))[0]
            spec = importlib.util.spec_from_file_location(name, path)
        else:
            name = path.replace(".", "_x_")
            init = os.path.join(path, "__init__.py")
            spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[path])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        for k, v in getattr(module, "NODE_CLASS_MAPPINGS", {}).items():
            if k not in ignore:
                NODE_CLASS_MAPPINGS[k] = v
        return True
    except Exception as e:  # noqa: BLE001  (ComfyUI logs and goes on)
        log(f"Cannot import {path} module for custom nodes: {e}")
        return False
