"""Directories of the stand-in, as ComfyUI's folder_paths module keeps them."""

import os

import yaml_subset

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


# ERA picks how extra_model_paths.yaml is read (STANDIN_COMFY_ERA), so that tests catch
# roots that only work in one era of ComfyUI:
#   current      ComfyUI b9d9bcb (2025-01-11) and later: utils/extra_config.py takes a relative
#                base_path, and a relative entry without base_path, relative to the yaml's
#                directory, and normalises every path.
#   pre-b9d9bcb  b9d9bcb's parent (PR #5847, December 2024): a relative entry without base_path
#                is relative to the yaml's directory; base_path (expanded for ~ and $VARS) is
#                joined as written, so a relative one stays relative to the working directory.
#   legacy       before PR #5847 (main.py's and then utils/extra_config.py's loader of 2023 and
#                2024): every relative path stays relative, to the working directory of the
#                moment it is used; base_path is not expanded and is_default is not a key.
# Relative paths are kept as such in folder_names_and_paths, as ComfyUI keeps them.
ERA = os.environ.get("STANDIN_COMFY_ERA", "current") or "current"
if ERA not in ("current", "pre-b9d9bcb", "legacy"):
    raise SystemExit(f"stand-in: unknown STANDIN_COMFY_ERA {ERA!r}")


def add_model_folder_path(name, path, is_default=False):
    """As folder_paths.add_model_folder_path: a path already listed is not added again
    (moved first for is_default); legacy ComfyUI appends duplicates."""
    name = _legacy.get(name, name)
    paths = folder_names_and_paths.setdefault(name, [])
    if ERA != "legacy" and path in paths:
        if is_default and paths[0] != path:
            paths.remove(path)
            paths.insert(0, path)
        return
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
    """As ComfyUI's load_extra_path_config of the era ERA (see above), on the document read by
    yaml_subset.safe_load. A value that is not a string fails as it does in ComfyUI (it calls
    .split on it); an empty document fails too (ComfyUI iterates over None)."""
    with open(yaml_path, encoding="utf-8") as stream:
        config = yaml_subset.safe_load(stream.read(), yaml_path)
    yaml_dir = os.path.dirname(os.path.abspath(yaml_path))
    for c in config:  # TypeError on an empty document, as in ComfyUI
        conf = config[c]
        if conf is None:
            continue
        base_path = None
        if "base_path" in conf:
            base_path = conf.pop("base_path")
            if ERA != "legacy":
                base_path = os.path.expandvars(os.path.expanduser(base_path))
            if ERA == "current" and not os.path.isabs(base_path):
                base_path = os.path.abspath(os.path.join(yaml_dir, base_path))
        is_default = False
        if ERA != "legacy" and "is_default" in conf:
            is_default = conf.pop("is_default")
        for x in conf:
            for y in conf[x].split("\n"):
                if len(y) == 0:
                    continue
                full_path = y
                if ERA == "current":
                    if base_path:
                        full_path = os.path.join(base_path, full_path)
                    elif not os.path.isabs(full_path):
                        full_path = os.path.abspath(os.path.join(yaml_dir, y))
                    full_path = os.path.normpath(full_path)
                elif base_path is not None:
                    full_path = os.path.join(base_path, full_path)
                elif ERA == "pre-b9d9bcb" and not os.path.isabs(full_path):
                    full_path = os.path.abspath(os.path.join(yaml_dir, y))
                log(f"Adding extra search path {x} {full_path}")
                add_model_folder_path(x, full_path, is_default)
