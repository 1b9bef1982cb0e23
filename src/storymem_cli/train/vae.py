"""The autoencoder stage of a from-scratch model: a Wan VAE trained to reconstruct the dataset's clips.

A random VAE encodes clips to latents that decode to noise, so a small model meant to be watched needs
its own VAE before its transformer is trained (``--stage vae``, then ``--vae OUT/vae``). Loss: L1
reconstruction (flat-colour sprites keep sharper edges than with L2) plus a small KL to N(0, 1) on a
posterior sample. The exported config records the latents' per-channel mean and std, which the
pipeline uses to normalise latents (``latents_mean`` / ``latents_std``), so diffusion sees unit-scale
latents as with Wan's own VAE.
"""

from __future__ import annotations

from pathlib import Path

import torch

from storymem_cli.train.checkpoint import write_folder_atomic

STATS_VIDEOS = 32  # windows the exported latent statistics are measured on
INIT_LOGVAR = -8.0  # posterior std ~0.02 at init: a random posterior's unit noise drowns the latent


def init_posterior(vae: torch.nn.Module, logvar: float = INIT_LOGVAR) -> None:
    """Start a from-scratch VAE with a nearly deterministic posterior.

    At random init the posterior means are small and its std is ~1, so a sampled latent is mostly
    noise: the decoder learns to ignore it and outputs the dataset's mean frame, a plateau that 200
    steps of the toy VAE did not leave (measured: every reconstruction one grey-green frame). Zeroing
    the log-variance rows of ``quant_conv`` and biasing them to ``logvar`` lets reconstruction drive
    the means from the first step; the small KL term still pulls the variance up over training.
    """
    z = vae.quant_conv.bias.shape[0] // 2  # moments = [mean | logvar] channels
    with torch.no_grad():
        vae.quant_conv.weight[z:].zero_()
        vae.quant_conv.bias[z:].fill_(logvar)


def pixel_weights(pixels: torch.Tensor, chroma_weight: float) -> torch.Tensor:
    """1 + chroma_weight * chroma per pixel ((B, 1, F, H, W)); chroma = (max - min channel) / 2 in [0, 1].

    Plain L1 is dominated by large flat backgrounds: a small saturated sprite is a few percent of the
    frame, so the autoencoder blurs it into the background for a long time (docs/training.md). Weighting
    saturated pixels makes the sprite's colour and outline count from the first steps.
    """
    chroma = (pixels.amax(dim=1, keepdim=True) - pixels.amin(dim=1, keepdim=True)) / 2
    return 1.0 + chroma_weight * chroma


def vae_loss(
    vae: torch.nn.Module, pixels: torch.Tensor, generator: torch.Generator, kl_weight: float, chroma_weight: float = 0.0
) -> torch.Tensor:
    posterior = vae.encode(pixels).latent_dist
    recon = vae.decode(posterior.sample(generator=generator)).sample
    kl = 0.5 * (posterior.mean.pow(2) + posterior.var - 1.0 - posterior.logvar).mean()
    weights = pixel_weights(pixels, chroma_weight)
    recon_loss = ((recon - pixels).abs() * weights).sum() / (weights.sum() * pixels.shape[1])
    return recon_loss + kl_weight * kl


@torch.no_grad()
def latent_stats(vae: torch.nn.Module, videos: list[torch.Tensor]) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the posterior means of ``videos`` ((1, 3, F, H, W) each)."""
    latents = torch.cat([vae.encode(v).latent_dist.mode().transpose(0, 1).flatten(1) for v in videos], dim=1)
    return latents.mean(dim=1).tolist(), latents.std(dim=1).clamp_min(1e-6).tolist()


def export_vae(dest: Path, vae: torch.nn.Module, stats: tuple[list[float], list[float]]) -> Path:
    """Save the VAE (diffusers folder) with its latent statistics, atomically (temp folder + rename)."""
    vae.register_to_config(latents_mean=stats[0], latents_std=stats[1])
    return write_folder_atomic(dest, vae.save_pretrained)
