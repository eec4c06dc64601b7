"""Importable stand-ins for models people already have (importable, so they pickle and `py:` specs work).

``TinyStyleGenerator`` follows the official StyleGAN2/3 convention: ``mapping(z, c)`` -> ws
[N, num_ws, w_dim], ``synthesis(ws, noise_mode=...)`` -> images in [-1, 1], with random
noise unless ``noise_mode='const'``.
"""

import torch
from torch import nn


class TinyMapping(nn.Module):
    def __init__(self, z_dim, w_dim, num_ws):
        super().__init__()
        self.num_ws = num_ws
        self.net = nn.Sequential(nn.Linear(z_dim, w_dim), nn.LeakyReLU(0.2), nn.Linear(w_dim, w_dim))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        return self.net(z).unsqueeze(1).repeat(1, self.num_ws, 1)


class TinySynthesis(nn.Module):
    def __init__(self, w_dim, num_ws, channels=1, resolution=28, hidden=8):
        super().__init__()
        self.num_ws, self.res, self.channels, self.hidden = num_ws, resolution, channels, hidden
        self.fc = nn.Linear(w_dim * num_ws, hidden * 7 * 7)
        self.up = nn.Sequential(nn.ConvTranspose2d(hidden, 8, 4, 2, 1), nn.LeakyReLU(0.2),
                                nn.ConvTranspose2d(8, channels, 4, 2, 1))
        self.noise_strength = nn.Parameter(torch.tensor(0.1))

    def forward(self, ws, noise_mode="random", force_fp32=False):
        x = self.up(self.fc(ws.flatten(1)).view(-1, self.hidden, 7, 7))
        if noise_mode == "random":
            x = x + self.noise_strength * torch.randn_like(x)
        return torch.tanh(x)


class TinyStyleGenerator(nn.Module):
    def __init__(self, z_dim=8, w_dim=6, num_ws=3, c_dim=0, img_channels=1, img_resolution=28, hidden=8):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws, self.c_dim = z_dim, w_dim, num_ws, c_dim
        self.img_channels, self.img_resolution = img_channels, img_resolution
        self.mapping = TinyMapping(z_dim, w_dim, num_ws)
        self.synthesis = TinySynthesis(w_dim, num_ws, img_channels, img_resolution, hidden)

    def forward(self, z, c, **kwargs):
        return self.synthesis(self.mapping(z, c), **kwargs)


def make_stylegan():
    torch.manual_seed(0)
    return TinyStyleGenerator()


class Encoder(nn.Module):
    def __init__(self, latent_dim=5, stats=False):
        super().__init__()
        self.stats = stats
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 32), nn.ReLU())
        self.mu = nn.Linear(32, latent_dim)
        self.logvar = nn.Linear(32, latent_dim)

    def forward(self, x):
        h = self.body(x)
        return (self.mu(h), self.logvar(h)) if self.stats else self.mu(h)


def make_decoder(latent_dim=5):
    return nn.Sequential(nn.Linear(latent_dim, 28 * 28), nn.Sigmoid(), nn.Unflatten(1, (1, 28, 28)))


def make_autoencoder():
    """py: factory returning (encoder, decoder, image_shape)."""
    torch.manual_seed(0)
    return Encoder(), make_decoder(), (1, 28, 28)


def make_vae_dict():
    """py: factory returning a dict, with a (mu, logvar) encoder."""
    torch.manual_seed(1)
    return {"encoder": Encoder(stats=True), "decoder": make_decoder(), "image_shape": (1, 28, 28), "kind": "vae",
            "name": "dict-vae"}


def make_nothing():
    return 42


PYTHAE_FOLDER = None  # set by a test: the pythae folder whose networks ``pythae_networks`` hands over


def pythae_networks():
    """py: factory giving the encoder and decoder of the pythae model in PYTHAE_FOLDER as plain modules."""
    from pythae.models import AutoModel

    model = AutoModel.load_from_folder(str(PYTHAE_FOLDER))
    return {"encoder": model.encoder, "decoder": model.decoder, "image_shape": tuple(model.model_config.input_dim)}
