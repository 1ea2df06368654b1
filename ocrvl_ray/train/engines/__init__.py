"""Engine-specific code: what one trainer (the erniekit fork, PaddleFormers) needs beyond the generic wrapper."""
