# FLUX.1 [schnell] on a pinned ComfyUI, written in HCL with a variable and locals.

schema_version = 2
version_id     = "flux-schnell"

variable "precision" {
  description = "fp8 or fp16 weights for the diffusion model"
  default     = "fp8"
}

locals {
  flux_repo = "https://huggingface.co/Comfy-Org/flux1-schnell/resolve/main"
  text_enc  = "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main"
}

comfy {
  repo   = "https://github.com/comfyanonymous/ComfyUI"
  commit = "7c3f9e1d2b4a6c8e0f1a3b5c7d9e2f4a6b8c0d1e"
}

custom_node "rgthree-comfy" {
  repo   = "https://github.com/rgthree/rgthree-comfy"
  commit = "8e1b4c7d0a3f6e9b2c5d8a1f4e7b0c3d6a9f2e5b"
}

custom_node "ComfyUI-GGUF" {
  repo   = "https://github.com/city96/ComfyUI-GGUF"
  commit = "2f5a8c1e4b7d0a3f6c9e2b5d8a1c4f7e0b3d6a9c"
}

model "flux" {
  source        = format("%s/flux1-schnell-%s.safetensors", local.flux_repo, var.precision)
  target_subdir = "checkpoints"
}

model "t5" {
  source        = "${local.text_enc}/t5xxl_fp8_e4m3fn.safetensors"
  target_subdir = "text_encoders"
}

model "clip_l" {
  source        = "${local.text_enc}/clip_l.safetensors"
  target_subdir = "text_encoders"
}

python {
  version  = "3.11"
  packages = ["gguf>=0.10.0", "sentencepiece==0.2.0"]
}

options {
  skip_models = false
}
