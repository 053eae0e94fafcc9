// Package standin is a ComfyUI stand-in for tests: a small Python program (standard library
// only, Python 3.11) that serves ComfyUI's HTTP and WebSocket API as ComfyUI 0.3.64 does, for
// a handful of toy nodes, and honours ComfyUI's command-line flags. ComfyUI itself cannot run
// where the tests run (no torch, no GPU).
//
// The Python files are embedded. WriteTree writes them into a directory; WriteRepo makes that
// directory a git repository with one deterministic commit, so that a test can use it as the
// "ComfyUI" of a spec and run the whole path: build, runtime root, launcher, process, API,
// outputs.
//
// # Nodes
//
//	EmptyImage          width, height, batch_size, color -> IMAGE (ComfyUI's inputs)
//	StandInNoiseImage   width, height, seed -> IMAGE of random pixels: the PNG is about
//	                    width*height*3 bytes (2600x2600 makes a ~20 MB output)
//	LoadImage           image (a file of the input directory) -> IMAGE, MASK; PNG only
//	SaveImage           images, filename_prefix; output node; <prefix>_NNNNN_.png with
//	                    ComfyUI's counter; the prompt in a tEXt chunk unless --disable-metadata
//	PreviewImage        images; output node writing to the temp directory (type "temp")
//	StandInText         text [, images]; output node with a text output (ui "text")
//	StandInSaveAudio    seconds, frequency, filename_prefix; output node writing a WAV (ui "audio")
//	StandInFail         message [, images]; output node that raises (execution_error)
//	StandInSleep        seconds, steps [, images] -> IMAGE; a progress event per step;
//	                    honours /interrupt (execution_interrupted)
//
// Custom nodes in the custom_nodes folders (the install's and those of every
// --extra-model-paths-config file) are imported as ComfyUI does and may add nodes.
//
// # Folders, as strict as ComfyUI
//
// The path code re-implements ComfyUI's (comfyanonymous/ComfyUI), read in utils/extra_config.py
// at 0c853f3 (between PR #5847 of December 2024 and b9d9bcb), main.py at 002f2be (2026, with
// execute_prestartup_script), nodes.py's init_external_custom_nodes, main.py's loader of 2023
// and 2024, and the change b9d9bcb (PR #6395, 2025-01-11) made to base_path:
//
//   - folder_paths.load_extra_path_config mirrors utils/extra_config.py's
//     load_extra_path_config (before August 2024 main.py's) for the era STANDIN_COMFY_ERA
//     names: "current" (b9d9bcb and later: relative base_path and relative entries against the
//     yaml's directory, paths normalised), "pre-b9d9bcb" (relative entries without base_path
//     against the yaml's directory, base_path joined as written) or "legacy" (before #5847:
//     every relative path kept, so resolved against the working directory; no ~/$VAR
//     expansion, is_default not a key). Values are split on newlines; an empty document fails.
//   - folder_paths.add_model_folder_path keeps a path once (legacy: duplicates), as written.
//   - the prestartup pass lists every custom_nodes path with os.listdir (main.py's
//     execute_prestartup_script) and nodes.load_custom_nodes with
//     os.listdir(os.path.realpath(path)) (nodes.py's init_external_custom_nodes): a missing
//     folder is a FileNotFoundError and the stand-in does not start, as ComfyUI does not.
//   - yaml_subset.py reads the YAML of these files as PyYAML's safe_load does, refusing what
//     it does not know (the tests compare it with PyYAML when PyYAML is installed).
//   - comfyui/custom_nodes exists, as in every ComfyUI checkout.
//
// # Behaviour kept from ComfyUI
//
// Routes (also under /api): POST and GET /prompt, GET and POST /queue, POST /interrupt,
// GET and POST /history, GET /history/<id>, GET /view, POST /upload/image, POST /free,
// GET /system_stats, GET /object_info, GET /models, GET /ws. Validation errors are HTTP 400
// with error and node_errors (invalid_prompt, prompt_no_outputs,
// prompt_outputs_failed_validation with required_input_missing, invalid_input_type,
// value_smaller_than_min, value_bigger_than_max, value_not_in_list, return_type_mismatch,
// bad_linked_input, custom_validation_failed). WebSocket events follow ComfyUI's order and end
// with executing{node: null, prompt_id} after the history entry is stored. Outputs are cached
// across prompts by input signature, so an identical resubmission gives execution_cached and
// the old file names. The temp directory is DIR/temp, emptied at start and exit; the user
// directory must exist; the database (--database-url sqlite:///...) is created with sqlite3.
// A request with a mismatching Origin header on a loopback host is refused with 403.
//
// # Fault switches (environment of the stand-in process)
//
//	STANDIN_START_DELAY=S      sleep S seconds before listening (slow start)
//	STANDIN_EXIT_AT_START=N    log a line and exit with status N before listening
//	STANDIN_CRASH_ON=CLASS     exit with status 7 when a node of class CLASS starts
//	STANDIN_DROP_WS=1          close the prompt's WebSocket right after execution_start
//	STANDIN_IGNORE_SIGNALS=1   ignore SIGINT and SIGTERM (only SIGKILL stops it)
//	STANDIN_COMFY_ERA=ERA      read extra_model_paths.yaml as ComfyUI of ERA does (above)
package standin
