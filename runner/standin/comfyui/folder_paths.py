"""Directories of the stand-in, as ComfyUI's folder_paths module keeps them."""

import os

base_path = os.path.dirname(os.path.abspath(__file__))
output_directory = os.path.join(base_path, "output")
input_directory = os.path.join(base_path, "input")
temp_directory = os.path.join(base_path, "temp")
user_directory = os.path.join(base_path, "user")

# folder name -> list of directories, like folder_names_and_paths.
folder_names_and_paths = {
    "checkpoints": [os.path.join(base_path, "models", "checkpoints")],
    "loras": [os.path.join(base_path, "models", "loras")],
    "vae": [os.path.join(base_path, "models", "vae")],
    "custom_nodes": [os.path.join(base_path, "custom_nodes")],
}

_legacy = {"unet": "diffusion_models", "clip": "text_encoders"}


def add_model_folder_path(name, path, is_default=False):
    name = _legacy.get(name, name)
    paths = folder_names_and_paths.setdefault(name, [])
    if path in paths:
        paths.remove(path)
    if is_default:
        paths.insert(0, path)
    else:
        paths.append(path)


def get_folder_paths(name):
    return list(folder_names_and_paths.get(_legacy.get(name, name), []))


def get_filename_list(name):
    out = set()
    for d in get_folder_paths(name):
        if not os.path.isdir(d):
            continue
        for dirpath, _, files in os.walk(d, followlinks=True):
            for f in files:
                out.add(os.path.relpath(os.path.join(dirpath, f), d).replace(os.sep, "/"))
    return sorted(out)


def get_directory_by_type(kind):
    return {"output": output_directory, "input": input_directory, "temp": temp_directory}.get(kind)


def load_extra_path_config(yaml_path, log):
    """load_extra_path_config reads the small YAML subset of extra_model_paths.yaml:
    sections of `key: value` and `key: |` blocks (several paths, one a line)."""
    with open(yaml_path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    sections = {}
    cur = None
    block_key = None
    block_indent = None
    for raw in lines:
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        indent = len(raw) - len(raw.lstrip())
        text = raw.strip()
        if block_key is not None:
            if block_indent is None and indent > 2:
                block_indent = indent
            if block_indent is not None and indent >= block_indent:
                sections[cur][block_key] += text + "\n"
                continue
            block_key = None
        if indent == 0:
            cur = text.rstrip(":").strip()
            sections[cur] = {}
            continue
        key, _, value = text.partition(":")
        value = value.split(" #")[0].strip().strip('"').strip("'")
        if value == "|":
            block_key, block_indent = key.strip(), None
            sections[cur][block_key] = ""
            continue
        sections[cur][key.strip()] = value
    yaml_dir = os.path.dirname(os.path.abspath(yaml_path))
    for name, conf in sections.items():
        base = conf.pop("base_path", None)
        is_default = conf.pop("is_default", "false").lower() == "true"
        if base:
            base = os.path.expandvars(os.path.expanduser(base))
            if not os.path.isabs(base):
                base = os.path.abspath(os.path.join(yaml_dir, base))
        for folder, value in conf.items():
            for p in value.split("\n"):
                p = p.strip()
                if not p:
                    continue
                full = os.path.join(base, p) if base else os.path.join(yaml_dir, p)
                full = os.path.normpath(full)
                log(f"Adding extra search path {folder} {full}")
                add_model_folder_path(folder, full, is_default)
