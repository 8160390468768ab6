"""Leakage metrics: how close a reconstruction is to the client's true batch. MSE, PSNR, SSIM and
AVD with the Hungarian matching of reconstructions to truth (:mod:`.leakage`), LPIPS where its
backbone weights exist (:mod:`.lpips`), and the metrics of each modality (:mod:`.modality`).
Above :mod:`fedleak.simulator.data`; below the runners.
"""
