"""Where an agent looks: attention maps (GMP, Grad-CAM, perturbation), games played with them, the
localize .npz, overlay videos and the localization score against RAM objects."""
