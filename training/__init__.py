"""Training-side remedies: fine-tuning (full or LoRA) in the evaluator's exact format, and the flip test.

    python -m training.finetune --model toy --dataset Synthetic_Controlled_B --output-dir finetuned/toy-b ...
    python -m training.flip_test --model-path finetuned/toy-b/best --dataset Synthetic_Controlled_B

Modules: `config` (every setting), `data` (which samples train and evaluate), `encode` (sequences and the
answer-only label mask), `model_setup` (frozen vision side, LoRA targets), `trainer` (the loop, resume),
`checkpoints` (loadable, atomically written checkpoints), `export` (best/ and the summary), `finetune` (the
command line), `flip_test` (does the answer flip with the image?). Flip augmentation and visual prompting
live in the data layer (`dataset_zoo.flip`, `dataset_zoo.boxes`, `dataset_zoo.visual_prompt`).
"""
