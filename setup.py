"""power-bert-tf: PoWER-BERT (Goyal et al., ICML 2020) in TensorFlow 2 / Keras 3."""
from setuptools import find_packages, setup

setup(
    name="power-bert-tf",
    version="0.1.0",
    description="Progressive word-vector elimination for fast BERT inference (TF2/Keras 3)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["power_bert_tf", "power_bert_tf.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow==2.21.*",
        "tensorflow-text==2.21.*",
        "keras>=3.10",
        "numpy",
        "absl-py",
        "safetensors",
        "sentencepiece",
        "tensorflow-datasets",
        "importlib_resources",  # tensorflow-datasets needs it to download, but does not declare it
        "tensorboard",
        "scikit-learn",
        "scipy",
        "matplotlib",  # experiments/ plots
    ],
    extras_require={
        # --phase=export --export_format=onnx, and the ONNX Runtime rows of the benchmark.
        "onnx": ["onnxruntime>=1.20", "onnx>=1.17", "tf2onnx>=1.17"],
        "peer": ["torch", "transformers"],
        "test": ["pytest", "pytest-xdist", "pytest-timeout", "hypothesis", "import-linter",
                 "ruff", "onnxruntime>=1.20", "onnx>=1.17", "tf2onnx>=1.17"],
    },
)
