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


def inflate_temporal(vae: torch.nn.Module) -> int:
    """Turn a VAE trained on single frames into a per-frame video autoencoder; returns layers changed.

    With ``--frames 1`` the causal convolutions only ever see zero padding in their earlier time taps,
    so those taps and the temporal resamplers (``time_conv``) keep their random init, and the first
    steps on whole clips decode every 4-frame group as noise: the spatial skill is lost before the
    temporal one is learnt (measured: frame-0 shape accuracy 0.82 -> 0.5 after 400 clip steps). Here
    the earlier taps start at zero, the downsampling ``time_conv`` averages its three frames and the
    upsampling one copies its input into both output frames, so a still clip reconstructs as well as
    its frames from the first step and training only has to add motion. (Video VAEs are commonly
    initialised from image autoencoders this way.) Single-frame outputs are unchanged.
    """
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d, WanResample

    resamplers = [m for m in vae.modules() if isinstance(m, WanResample) and hasattr(m, "time_conv")]
    time_convs = {id(m.time_conv) for m in resamplers}
    convs = [m for m in vae.modules() if isinstance(m, WanCausalConv3d) and id(m) not in time_convs]
    with torch.no_grad():
        for module in resamplers:
            conv = module.time_conv
            c_in, taps = conv.weight.shape[1], conv.weight.shape[2]
            eye = torch.eye(c_in, dtype=conv.weight.dtype)[:, :, None, None]
            conv.weight.zero_()
            conv.bias.zero_()
            if module.mode == "downsample3d":  # (C, C, 3): the mean of the three frames it strides over
                for k in range(taps):
                    conv.weight[:, :, k] = eye / taps
            else:  # upsample3d, (2C, C, 3): both output frames copy the current input frame
                conv.weight[:c_in, :, taps - 1] = eye
                conv.weight[c_in:, :, taps - 1] = eye
        temporal = [m for m in convs if m.weight.shape[2] > 1]
        for module in temporal:
            module.weight[:, :, :-1].zero_()  # the last tap is the current frame (causal padding in front)
    return len(resamplers) + len(temporal)


def chroma(pixels: torch.Tensor) -> torch.Tensor:
    """(max - min channel) / 2 per pixel of (B, 3, F, H, W) in [-1, 1]: (B, 1, F, H, W) in [0, 1]."""
    return (pixels.amax(dim=1, keepdim=True) - pixels.amin(dim=1, keepdim=True)) / 2


def pixel_weights(pixels: torch.Tensor, chroma_weight: float) -> torch.Tensor:
    """1 + chroma_weight * chroma per pixel ((B, 1, F, H, W)), chroma as :func:`chroma`.

    Plain L1 is dominated by large flat backgrounds: a saturated sprite is a tenth to a fifth of the
    frame, so the autoencoder blurs it into the background for a long time (docs/training.md). Weighting
    saturated pixels makes the sprite's colour and outline count from the first steps.
    """
    return 1.0 + chroma_weight * chroma(pixels)


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
