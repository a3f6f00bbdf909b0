"""The planners: each plans one part of a spec (l2compile.plan runs them)."""
