"""The article's script as published, with only its data source changed.

"Applying L2 Regularization to All Weights in TensorFlow": a 784-128-64-10
MLP with L2(0.01) on each Dense kernel, Adam, 10 epochs, batch size 32. The
one change: MNIST is read from the .npz named by $L2COMPILE_DATA (a folder)
instead of Keras' download, which this machine cannot reach. It prints the
training seconds so the benchmark can compare them.
"""

import os
import time

import numpy as np
import tensorflow as tf
from tensorflow.keras import layers, regularizers

# Changed: the article calls tf.keras.datasets.mnist.load_data().
with np.load(os.path.join(os.environ["L2COMPILE_DATA"], "mnist.npz")) as data:
    (x_train, y_train) = data["x_train"], data["y_train"]
    (x_test, y_test) = data["x_test"], data["y_test"]

x_train = x_train.reshape(-1, 784) / 255.0
x_test = x_test.reshape(-1, 784) / 255.0

model = tf.keras.Sequential(
    [
        layers.Dense(
            128,
            activation="relu",
            input_shape=(784,),
            kernel_regularizer=regularizers.L2(0.01),
        ),
        layers.Dense(64, activation="relu", kernel_regularizer=regularizers.L2(0.01)),
        layers.Dense(
            10, activation="softmax", kernel_regularizer=regularizers.L2(0.01)
        ),
    ]
)

model.compile(
    optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"]
)
began = time.perf_counter()  # added: the training time
model.fit(x_train, y_train, epochs=10, batch_size=32, validation_data=(x_test, y_test))
print("Training seconds:", time.perf_counter() - began)  # added

test_loss, test_acc = model.evaluate(x_test, y_test)
print("Test loss:", test_loss)
print("Test accuracy:", test_acc)
