"""Hydra launchers of dlbench's own (conf/hydra/launcher/<name>.yaml names each by _target_)."""
