"""Run-wide passes that need every row of a run, so they run after the stages: identity
clustering across sources (`identities`) and identity-disjoint splits (`splits`)."""
