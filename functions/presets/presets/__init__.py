"""PresetsFunction: image presets (ai-chat, ai-vision, thumbnail, preview) of stored originals."""
