# SDXL with IPAdapter: everything of sdxl-base, one node moved to a branch, IPAdapter added.

extends    = "sdxl-base"
version_id = "sdxl-ipadapter"

variable "ipadapter_commit" {
  description = "commit of ComfyUI_IPAdapter_plus (override with --var ipadapter_commit=...)"
  default     = "b188a6cb39b512a9c6da7235b880af42c78ccd0d"
}

locals {
  hf = "https://huggingface.co"
}

# Overrides the node of the same name in sdxl-base, attribute by attribute.
custom_node "ComfyUI-Impact-Pack" {
  commit = "5b0d2e3f4a6c8e1f2a3b4c5d6e7f8091a2b3c4d5"
}

custom_node "ComfyUI_IPAdapter_plus" {
  repo   = "https://github.com/cubiq/ComfyUI_IPAdapter_plus"
  commit = var.ipadapter_commit
}

model "ipadapter-sdxl" {
  source        = "${local.hf}/h94/IP-Adapter/resolve/main/sdxl_models/ip-adapter_sdxl_vit-h.safetensors"
  target_subdir = "ipadapter"
}

model "clip-vision" {
  source        = "${local.hf}/h94/IP-Adapter/resolve/main/models/image_encoder/model.safetensors"
  target_subdir = "clip_vision"
  name          = lower("CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors")
}

env = {
  COMFY_IPADAPTER_CACHE = "off"
}
