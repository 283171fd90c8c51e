"""The evaluation workflow behind `main_aro.py`: configurations, the batch loop, run folders, shards."""
