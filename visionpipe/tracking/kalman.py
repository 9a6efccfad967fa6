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

    def gating_distances(self, means: np.ndarray, covariances: np.ndarray,
                         measurements: np.ndarray) -> np.ndarray:
        """:meth:`gating_distance` of many states at once: (T, 8) means and (T, 8, 8)
        covariances against (N, 4) ``xyah`` measurements -> (T, N), in one stacked Cholesky
        and solve (one LAPACK call instead of one per track)."""
        means = np.asarray(means, dtype=np.float64).reshape(-1, 8)
        measurements = np.asarray(measurements, dtype=np.float64).reshape(-1, 4)
        if not len(means) or not len(measurements):
            return np.zeros((len(means), len(measurements)))
        h = means[:, 3]
        std = np.stack([self.std_position * h, self.std_position * h, np.full_like(h, 1e-1),
                        self.std_position * h], 1)
        projected = (self.observation @ np.asarray(covariances, dtype=np.float64)
                     @ self.observation.T)
        projected = projected + np.einsum("ti,ij->tij", np.square(std), np.eye(4))
        d = measurements[None, :, :] - (means @ self.observation.T)[:, None, :]  # (T, N, 4)
        factor = np.linalg.cholesky(projected)
        z = np.linalg.solve(factor, np.swapaxes(d, 1, 2))  # (T, 4, N)
        return np.sum(z * z, axis=1)

    def update_many(self, means: np.ndarray, covariances: np.ndarray,
                    measurements: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """:meth:`update` of T states with their T ``xyah`` measurements at once (one stacked
        solve): (T, 8) means and (T, 8, 8) covariances."""
        means = np.asarray(means, dtype=np.float64).reshape(-1, 8)
        covariances = np.asarray(covariances, dtype=np.float64).reshape(-1, 8, 8)
        measurements = np.asarray(measurements, dtype=np.float64).reshape(-1, 4)
        if not len(means):
            return means, covariances
        h = means[:, 3]
        std = np.stack([self.std_position * h, self.std_position * h, np.full_like(h, 1e-1),
                        self.std_position * h], 1)
        projected = (self.observation @ covariances @ self.observation.T
                     + np.einsum("ti,ij->tij", np.square(std), np.eye(4)))
        cross = covariances @ self.observation.T  # (T, 8, 4): P H^T
        gain = np.swapaxes(np.linalg.solve(projected, np.swapaxes(cross, 1, 2)), 1, 2)
        innovation = measurements - means @ self.observation.T
        means = means + np.einsum("tij,tj->ti", gain, innovation)
        covariances = covariances - gain @ projected @ np.swapaxes(gain, 1, 2)
        return means, covariances
