"""pref-assets: a Dagster pipeline that turns prompts into a preference (DPO/ORPO) dataset."""
