"""The hand-written baseline of benchmarks/image_training.py: an image
classifier written the way keras.io's "Image classification from scratch"
teaches, on TensorFlow.

    python benchmarks/image_script.py --data FOLDER --model cnn|mobilenet
                                      [--epochs 5] [--size 32]

FOLDER holds train/<class>/*.png and test/<class>/*.png. The images are read
with `keras.utils.image_dataset_from_directory` (a seeded tenth of train/
validates), augmented in the `tf.data` map (training batches only), and the
model is the same architecture and L2 as the spec image_training.py builds
with l2compile. Prints the test loss and accuracy.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import tensorflow as tf
from keras import layers, regularizers

L2 = 0.0001
SEED = 0


def cnn(size: int, classes: int) -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((size, size, 3)),
            layers.Conv2D(
                16, 3, activation="relu", kernel_regularizer=regularizers.L2(L2)
            ),
            layers.MaxPooling2D(),
            layers.Conv2D(
                32, 3, activation="relu", kernel_regularizer=regularizers.L2(L2)
            ),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(
                classes, activation="softmax", kernel_regularizer=regularizers.L2(L2)
            ),
        ]
    )


def mobilenet(size: int, classes: int) -> keras.Model:
    backbone = keras.applications.MobileNetV3Small(
        input_shape=(size, size, 3), include_top=False, weights=None
    )
    return keras.Sequential(
        [
            keras.Input((size, size, 3)),
            layers.Rescaling(255.0),  # MobileNetV3 reads [0, 255]
            backbone,
            layers.GlobalAveragePooling2D(),
            layers.Dense(
                classes, activation="softmax", kernel_regularizer=regularizers.L2(L2)
            ),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", choices=("cnn", "mobilenet"), required=True)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    keras.utils.set_random_seed(SEED)
    size = (args.size, args.size)
    train, val = keras.utils.image_dataset_from_directory(
        os.path.join(args.data, "train"),
        image_size=size,
        batch_size=args.batch_size,
        validation_split=0.1,
        subset="both",
        seed=SEED,
    )
    test = keras.utils.image_dataset_from_directory(
        os.path.join(args.data, "test"),
        image_size=size,
        batch_size=args.batch_size,
        shuffle=False,
    )
    classes = len(train.class_names)
    scale = layers.Rescaling(1 / 255.0)
    augment = keras.Sequential(
        [layers.RandomRotation(0.05, seed=SEED), layers.RandomZoom(0.1, seed=SEED)]
    )

    def training(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x = scale(x)
        return (augment(x, training=True) if args.model == "cnn" else x), y

    train = train.map(training, num_parallel_calls=tf.data.AUTOTUNE)
    val = val.map(lambda x, y: (scale(x), y))
    test = test.map(lambda x, y: (scale(x), y))
    train, val = train.prefetch(tf.data.AUTOTUNE), val.prefetch(tf.data.AUTOTUNE)
    model = (cnn if args.model == "cnn" else mobilenet)(args.size, classes)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    began = time.perf_counter()
    model.fit(train, validation_data=val, epochs=args.epochs, verbose=2)
    print(f"Training seconds: {time.perf_counter() - began:.2f}")
    loss, accuracy = model.evaluate(test, verbose=0)
    print(f"Test loss: {loss:.4f}")
    print(f"Test accuracy: {accuracy:.4f}")


if __name__ == "__main__":
    main()
