"""Block-wise weight quantization numerics (RTN, HQQ, GPTQ) for a MatMul weight W of shape [K, N]
(y = x @ W): each column is cut into blocks of `block` rows along K, each block has its own scale
(and zero point when asymmetric). INT4 and INT8 share the code (`bits`).

The integer codes are kept unsigned (0..2^bits-1) with a zero point, as onnxruntime's MatMulNBits
stores them; symmetric quantization is the special case zero point = 2^(bits-1) (the MatMulNBits
default), so one packing serves both. `signed_codes` gives the int4/int8 view TensorRT's
DequantizeLinear takes (symmetric only: TensorRT's INT4 takes no zero point).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METHODS = ("rtn", "hqq", "gptq")


@dataclass
class Blocks:
    """Quantized W [K, N]: codes [K, N] (unsigned), scales and zero points [ceil(K/block), N]."""

    codes: np.ndarray
    scales: np.ndarray
    zero_points: np.ndarray
    bits: int
    block: int
    symmetric: bool

    @property
    def shape(self) -> tuple[int, int]:
        return self.codes.shape  # type: ignore[return-value]

    def dequantize(self) -> np.ndarray:
        k = self.codes.shape[0]
        scales = np.repeat(self.scales, self.block, axis=0)[:k]
        zeros = np.repeat(self.zero_points.astype(np.float32), self.block, axis=0)[:k]
        return ((self.codes.astype(np.float32) - zeros) * scales).astype(np.float32)

    def signed_codes(self) -> np.ndarray:
        return (self.codes.astype(np.int16) - (1 << (self.bits - 1))).astype(np.int8)

    def nbytes(self) -> int:
        """Bytes as stored: packed codes, fp32 scales, packed zero points (none when symmetric)."""
        codes = (self.codes.size * self.bits + 7) // 8
        zeros = 0 if self.symmetric else (self.zero_points.size * self.bits + 7) // 8
        return codes + self.scales.size * 4 + zeros


def clip_block(block: int, k: int) -> int:
    """The block size used for a layer of K inputs: the group size asked for, no larger than K, a power
    of two of at least 16 (what MatMulNBits accepts); K below 16 uses one block of 16 (padded)."""
    size = max(16, min(int(block), k))
    return 1 << (size.bit_length() - 1)


def _pad(w: np.ndarray, block: int) -> np.ndarray:
    k = w.shape[0]
    padded = -(-k // block) * block
    if padded == k:
        return w
    return np.concatenate([w, np.zeros((padded - k, w.shape[1]), w.dtype)], axis=0)


def _params(w: np.ndarray, bits: int, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    """Scales and zero points of blocks w [nb, block, N] (min/max, zero kept representable)."""
    top = (1 << bits) - 1
    if symmetric:
        half = 1 << (bits - 1)
        absmax = np.max(np.abs(w), axis=1)
        scales = absmax / (half - 1)
        zeros = np.full(scales.shape, half, np.int32)
    else:
        lo = np.minimum(np.min(w, axis=1), 0.0)
        hi = np.maximum(np.max(w, axis=1), 0.0)
        scales = (hi - lo) / top
        safe = np.where(scales == 0, 1.0, scales)
        zeros = np.clip(np.round(-lo / safe), 0, top).astype(np.int32)
    scales = np.where(scales == 0, 1.0, scales).astype(np.float32)
    return scales, zeros


def _codes(w: np.ndarray, scales: np.ndarray, zeros: np.ndarray, bits: int) -> np.ndarray:
    top = (1 << bits) - 1
    return np.clip(np.round(w / scales[:, None, :]) + zeros[:, None, :], 0, top).astype(np.uint8)


def quantize(
    w: np.ndarray,
    bits: int,
    block: int,
    symmetric: bool,
    method: str = "rtn",
    inputs: np.ndarray | None = None,
) -> Blocks:
    """Quantize W [K, N] block-wise. `method` "gptq" needs `inputs` ([M, K] activations of this
    layer from the calibration set) and falls back to RTN without them."""
    w = np.asarray(w, np.float32)
    k, n = w.shape
    if method == "gptq" and inputs is not None:
        return _gptq(w, bits, block, symmetric, inputs)
    padded = _pad(w, block).reshape(-1, block, n)
    scales, zeros = _params(padded, bits, symmetric)
    if method == "hqq" and not symmetric:
        scales, zeros = _hqq(padded, scales, zeros, bits)
    codes = _codes(padded, scales, zeros, bits).reshape(-1, n)[:k]
    return Blocks(codes, scales, zeros.astype(np.uint8), bits, block, symmetric)


def _hqq(
    w: np.ndarray, scales: np.ndarray, zeros: np.ndarray, bits: int, iters: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """Half-Quadratic Quantization (Badri & Shaji 2023): the zero point minimising an lp (p < 1) norm
    of the weight error by proximal steps, scales kept; zero points rounded to codes at the end (the
    MatMulNBits layout holds integer zero points, as onnxruntime's HQQ does with round_zero)."""
    top = (1 << bits) - 1
    beta, kappa, p = 10.0, 1.01, 0.7
    zero = zeros.astype(np.float32)[:, None, :]
    scale = scales[:, None, :]
    best_zero, best_err = zero.copy(), np.inf
    for _ in range(iters):
        q = np.clip(np.round(w / scale + zero), 0, top)
        r = (q - zero) * scale
        e = w - r
        shrunk = np.sign(e) * np.maximum(np.abs(e) - (1.0 / beta) * np.power(np.abs(e) + 1e-8, p - 1), 0.0)
        zero = np.mean(q - (w - shrunk) / scale, axis=1, keepdims=True)
        beta *= kappa
        err = float(np.mean(np.abs(w - (np.clip(np.round(w / scale + zero), 0, top) - zero) * scale)))
        if err < best_err:
            best_err, best_zero = err, zero.copy()
    return scales, np.clip(np.round(best_zero[:, 0, :]), 0, top).astype(np.int32)


def _gptq(w: np.ndarray, bits: int, block: int, symmetric: bool, x: np.ndarray) -> Blocks:
    """GPTQ (Frantar et al. 2022), one input row at a time: each row's rounding error is spread over
    the rows not yet quantized through the inverse Hessian of the layer's inputs (H = 2 XᵀX / M), with
    each block's scale taken from the weights as updated when the block starts."""
    k, n = w.shape
    x = np.asarray(x, np.float64).reshape(-1, k)
    h = 2.0 * x.T @ x / max(len(x), 1)
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    work = w.astype(np.float64).copy()
    work[dead, :] = 0.0
    h += np.eye(k) * 0.01 * float(np.mean(np.diag(h)))
    upper = np.linalg.cholesky(np.linalg.inv(h)).T
    top = (1 << bits) - 1
    nb = -(-k // block)
    codes = np.zeros((k, n), np.uint8)
    scales = np.ones((nb, n), np.float32)
    zeros = np.zeros((nb, n), np.int32)
    for row in range(k):
        b = row // block
        if row % block == 0:
            chunk = work[row : row + block][None].astype(np.float32)
            s, z = _params(chunk, bits, symmetric)
            scales[b], zeros[b] = s[0], z[0]
        q = np.clip(np.round(work[row] / scales[b]) + zeros[b], 0, top)
        codes[row] = q.astype(np.uint8)
        err = (work[row] - (q - zeros[b]) * scales[b]) / upper[row, row]
        work[row + 1 :] -= np.outer(upper[row, row + 1 :], err)
    return Blocks(codes, scales, zeros.astype(np.uint8), bits, block, symmetric)


def pack_matmulnbits(blocks: Blocks) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(B [N, blocks, block*bits/8] uint8, scales [N*blocks] fp32, zero points or None when
    symmetric) in onnxruntime's MatMulNBits layout (com.microsoft; 4-bit: low nibble first)."""
    k, n = blocks.shape
    block, bits = blocks.block, blocks.bits
    padded = _pad(blocks.codes, block)
    if padded.shape[0] > k:
        # padding rows hold each block's zero point: they dequantize to 0
        padded[k:] = np.repeat(blocks.zero_points, block, axis=0)[k : padded.shape[0]]
    nb = padded.shape[0] // block
    per_col = padded.T.reshape(n, nb, block)  # [N, nb, block]
    if bits == 8:
        packed = per_col.astype(np.uint8)
    else:
        packed = (per_col[..., 0::2] & 0x0F) | ((per_col[..., 1::2] & 0x0F) << 4)
        packed = packed.astype(np.uint8)
    scales = blocks.scales.T.reshape(-1).astype(np.float32)  # [N, nb] row-major
    if blocks.symmetric:
        return packed, scales, None
    zeros = blocks.zero_points.T.astype(np.uint8)  # [N, nb]
    if bits == 4:
        if nb % 2:
            zeros = np.concatenate([zeros, np.zeros((n, 1), np.uint8)], axis=1)
        zeros = (zeros[:, 0::2] & 0x0F) | ((zeros[:, 1::2] & 0x0F) << 4)
    return packed, scales, zeros.reshape(-1).astype(np.uint8)
