"""A constant-velocity Kalman filter over boxes (our own; filterpy is not in the lock).

The state is ``(cx, cy, a, h, vcx, vcy, va, vh)``: box centre, aspect ratio ``w / h``, height
and their velocities, as in DeepSORT and ByteTrack. Process and measurement noise scale with
the box height, so a large near object and a small far one are tracked with the same relative
uncertainty.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

#: 0.95 quantile of the chi-square distribution by degrees of freedom (the Mahalanobis gate)
CHI2_95 = {1: 3.8415, 2: 5.9915, 3: 7.8147, 4: 9.4877}


def xyxy_to_xyah(box: np.ndarray) -> np.ndarray:
    box = np.asarray(box, dtype=np.float64)
    w = box[..., 2] - box[..., 0]
    h = box[..., 3] - box[..., 1]
    return np.stack([box[..., 0] + w / 2, box[..., 1] + h / 2, w / np.maximum(h, 1e-6), h], -1)


def xyah_to_xyxy(state: np.ndarray) -> np.ndarray:
    state = np.asarray(state, dtype=np.float64)
    h = state[..., 3]
    w = state[..., 2] * h
    return np.stack([state[..., 0] - w / 2, state[..., 1] - h / 2,
                     state[..., 0] + w / 2, state[..., 1] + h / 2], -1)


class KalmanBoxFilter:
    """Predict/update of one or many box states; the filter itself holds no track state."""

    def __init__(self, std_position: float = 1.0 / 20, std_velocity: float = 1.0 / 160):
        self.std_position = float(std_position)
        self.std_velocity = float(std_velocity)
        self.motion = np.eye(8)
        for i in range(4):
            self.motion[i, 4 + i] = 1.0
        self.observation = np.eye(4, 8)

    def initiate(self, measurement: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Mean and covariance of a new track from one ``xyah`` measurement."""
        mean = np.concatenate([measurement, np.zeros(4)])
        h = measurement[3]
        std = [2 * self.std_position * h, 2 * self.std_position * h, 1e-2,
               2 * self.std_position * h, 10 * self.std_velocity * h,
               10 * self.std_velocity * h, 1e-5, 10 * self.std_velocity * h]
        return mean, np.diag(np.square(std))

    def _process_noise(self, h: float) -> np.ndarray:
        std = [self.std_position * h, self.std_position * h, 1e-2, self.std_position * h,
               self.std_velocity * h, self.std_velocity * h, 1e-5, self.std_velocity * h]
        return np.diag(np.square(std))

    def predict(self, mean: np.ndarray, covariance: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        mean = self.motion @ mean
        covariance = self.motion @ covariance @ self.motion.T + self._process_noise(mean[3])
        if mean[3] < 1e-3:  # a shrinking box never flips to a negative height
            mean[3] = 1e-3
        return mean, covariance

    def project(self, mean: np.ndarray, covariance: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """The state in measurement space, with the measurement noise added."""
        h = mean[3]
        std = [self.std_position * h, self.std_position * h, 1e-1, self.std_position * h]
        projected = self.observation @ covariance @ self.observation.T + np.diag(np.square(std))
        return self.observation @ mean, projected

    def update(self, mean: np.ndarray, covariance: np.ndarray,
               measurement: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        projected_mean, projected_cov = self.project(mean, covariance)
        # gain = P H^T S^-1, solved rather than inverted
        gain = np.linalg.solve(projected_cov, (covariance @ self.observation.T).T).T
        mean = mean + gain @ (measurement - projected_mean)
        covariance = covariance - gain @ projected_cov @ gain.T
        return mean, covariance

    def gating_distance(self, mean: np.ndarray, covariance: np.ndarray,
                        measurements: np.ndarray, only_position: bool = False) -> np.ndarray:
        """Squared Mahalanobis distance of each ``xyah`` measurement from the state."""
        projected_mean, projected_cov = self.project(mean, covariance)
        if only_position:
            projected_mean, projected_cov = projected_mean[:2], projected_cov[:2, :2]
            measurements = measurements[:, :2]
        d = np.asarray(measurements, dtype=np.float64) - projected_mean
        factor = np.linalg.cholesky(projected_cov)
        z = np.linalg.solve(factor, d.T)
        return np.sum(z * z, axis=0)
