"""``spmcli reconstruct``: K-SVD denoising, or reconstruction over a given dictionary."""

from __future__ import annotations

import click

from ..restoration.denoising import DEFAULT_GAIN, LAMBDA_NUMERATOR
from ..sparse.dictionary import load_dictionary
from ..tasks import reconstruct as task_module
from ._batch import JobsType, batch_options, image_tasks, resolve_workers, run_batch, threads_per_image
from ._common import (
    SigmaType,
    check_reference,
    expand_images,
    given,
    max_pixels_option,
    output_paths,
    prepare_output_file,
    reference_option,
    refuse_unused,
    report_option,
    seed_option,
)

# Peak memory of one worker per input pixel (measured by benchmarks/bench_batch.py), for --jobs auto.
PEAK_BYTES_PER_PIXEL = 120.0

EPILOG = """\b
Examples:
  spmcli reconstruct noisy.png -o clean.png                      # denoise, sigma estimated
  spmcli reconstruct scans/ --output-dir clean/ --sigma 25 --report report.json --jobs auto
  spmcli reconstruct photo.png -o rebuilt.png --dict dict.npz --sparsity 4
"""


@click.command(name="reconstruct", epilog=EPILOG)
@click.argument("images", nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Output image (single input).")
@click.option(
    "--output-dir", type=click.Path(file_okay=False), default=None, help="Output folder (any number of inputs)."
)
@click.option("--dict", "dict_path", type=click.Path(dir_okay=False), default=None,
              help="Code over this dictionary (.npz) instead of learning one from each image.")  # fmt: skip
@click.option(
    "--sigma",
    type=SigmaType(),
    default="auto",
    show_default=True,
    help="Noise standard deviation on the 0..255 scale (a fraction sigma/255 of the full range for 16-bit and "
    "float images), or 'auto' to estimate it.",
)
@click.option("--denoiser", type=click.Choice(["collaborative", "ksvd"]), default="collaborative", show_default=True,
              help="Without --dict: collaborative filtering (groups of similar patches, hard thresholding then "
              "Wiener over a transform learned from the image; matches BM3D at half its time or less) or the "
              "K-SVD denoiser (a dictionary learned from the image, then the Wiener step).")  # fmt: skip
@click.option("--sparsity", type=click.IntRange(min=1), default=None,
              help="With --dict: at most K atoms per patch (no error target unless --sigma is given).")  # fmt: skip
@click.option("--patch-size", type=click.IntRange(2, 32), default=None, help="Patch side in pixels [default: 8].")
@click.option("--n-atoms", type=click.IntRange(1, 4096), default=256, show_default=True, help="Atoms to learn.")
@click.option("--iters", type=click.IntRange(min=0), default=10, show_default=True, help="K-SVD iterations.")
@click.option("--training-patches", type=click.IntRange(min=1), default=None,
              help="Patches K-SVD learns from [default: an eighth of the positions, 8,000..40,000].")  # fmt: skip
@click.option("--method", type=click.Choice(["approx", "ksvd"]), default="approx", show_default=True,
              help="Approximate K-SVD atom update (faster) or the exact rank-one SVD.")  # fmt: skip
@click.option("--gain", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_GAIN, show_default=True,
              help="Code each patch to an RMS error of GAIN x sigma per pixel.")  # fmt: skip
@click.option("--lambda", "noisy_weight", type=click.FloatRange(min=0), default=None,
              help=f"Weight of the input in the final average [default: {LAMBDA_NUMERATOR:g}/sigma].")  # fmt: skip
@click.option("--stride", type=click.IntRange(min=1), default=1, show_default=True,
              help="Step between coded patches (2: 20% faster, about 0.1 dB worse).")  # fmt: skip
@click.option("--wiener/--no-wiener", default=True, show_default=True,
              help="With --denoiser ksvd or --dict: finish with collaborative Wiener filtering of grouped similar "
              "patches (BM3D's second step, the sparse estimate as pilot): +0.4 dB on Set12 at sigma 25.")  # fmt: skip
@click.option("--clipped", type=click.Choice(["auto", "yes", "no"]), default="auto", show_default=True,
              help="Without --dict: whether the noise was clipped at black and white (as in every 8- or 16-bit "
              "file). 'yes' undoes the bias that leaves near black and white (Foi 2009: +0.3 to +0.9 dB on "
              "Set14's 8-bit images); 'auto' says yes when no value lies outside the range and some lie on its "
              "ends.")  # fmt: skip
@click.option("--threads", type=JobsType(), default="auto", show_default=True,
              help="Threads filtering bands of each image (the collaborative denoiser and every Wiener step); "
              "'auto': the usable cores divided among the --jobs workers, 1 on a cluster. The output is the "
              "same whatever the number.")  # fmt: skip
@report_option("sigma and how it was found, the settings used, atoms per patch, seconds, PSNR/SSIM with --reference")
@reference_option
@batch_options()
@seed_option
@max_pixels_option
@click.pass_context
def command(
    ctx: click.Context,
    images: tuple[str, ...],
    output: str | None,
    output_dir: str | None,
    dict_path: str | None,
    denoiser: str,
    sigma: float | str,
    sparsity: int | None,
    patch_size: int | None,
    n_atoms: int,
    iters: int,
    training_patches: int | None,
    method: str,
    gain: float,
    noisy_weight: float | None,
    stride: int,
    wiener: bool,
    clipped: str,
    threads: int | str,
    report_path: str | None,
    reference: str | None,
    seed: int,
    max_pixels: int,
    jobs: int | str,
    scheduler: str | None,
    skip_existing: bool,
) -> None:
    """Denoise IMAGES by collaborative filtering or K-SVD, or rebuild them over --dict.

    Without --dict, the default denoiser groups similar 8x8 patches of each
    image, hard-thresholds each group in a 3-D transform domain, and uses that
    estimate as the pilot of collaborative Wiener filtering over a sparsifying
    transform learned from the pilot (Dabov et al. 2007; Ravishankar & Bresler
    2013). --denoiser ksvd learns a 256-atom dictionary from the noisy image
    itself instead (Elad & Aharon 2006), codes every patch to the noise level
    and averages them with the noisy image, then applies the Wiener step
    (--no-wiener skips it). With --dict, every patch is coded over the given
    dictionary (--sparsity K, or the error target set by --sigma). Colour is
    processed jointly. Outputs keep each input's dtype, channels and alpha.
    """
    paths = expand_images(images, ctx)
    targets = output_paths(paths, output, output_dir)
    if report_path is not None:
        prepare_output_file(report_path, "--report", extensions=(".json",), inputs=paths)
    check_reference(reference, paths)
    ksvd_only = ["n_atoms", "iters", "training_patches", "method", "gain", "noisy_weight", "stride", "wiener"]
    if dict_path is None:
        refuse_unused(ctx, ["sparsity"], "without --dict (denoising codes to the noise level)")
        if denoiser == "collaborative":
            refuse_unused(ctx, ksvd_only, "with --denoiser collaborative (they set the K-SVD denoiser)")
    else:
        refuse_unused(ctx, ["denoiser", "clipped"], "with --dict (the given dictionary codes the image)")
        refuse_unused(ctx, ["n_atoms", "iters", "training_patches", "method"], "with --dict (nothing is learned)")
        if sparsity is not None and not given(ctx, "sigma"):
            refuse_unused(
                ctx, ["gain", "noisy_weight", "wiener"], "with --dict --sparsity and no --sigma (no noise level)"
            )
    dictionary = None
    if dict_path is not None:
        dictionary = load_dictionary(dict_path)
        if patch_size is not None and patch_size != dictionary.patch_size:
            raise click.BadParameter(
                f"the dictionary {dict_path} has {dictionary.patch_size}x{dictionary.patch_size} patches",
                param_hint="--patch-size",
            )
    patch_size = patch_size or (dictionary.patch_size if dictionary is not None else 8)
    if stride > patch_size:
        raise click.BadParameter(f"must not exceed the patch size {patch_size}", param_hint="--stride")
    workers, scheduler = resolve_workers(ctx, jobs, scheduler, paths, PEAK_BYTES_PER_PIXEL)
    settings = task_module.ReconstructSettings(
        dictionary=dict_path, denoiser=denoiser, sigma=sigma,
        use_sigma=dict_path is None or sparsity is None or given(ctx, "sigma"), sparsity=sparsity,
        patch_size=patch_size, n_atoms=n_atoms, iterations=iters,
        training_patches=training_patches, method=method, gain=gain, noisy_weight=noisy_weight, stride=stride,
        wiener=wiener, clipped=clipped, reference=reference, seed=seed, max_pixels=max_pixels,
        threads=threads_per_image(workers, scheduler) if threads == "auto" else int(threads),
    )  # fmt: skip
    run_batch(
        ctx, command="reconstruct", function=task_module.reconstruct_image, tasks=image_tasks(paths, targets),
        settings=settings, jobs=workers, scheduler=scheduler, skip_existing=skip_existing, summary=task_module.summary,
        verb="Reconstructed", report_path=report_path,
    )  # fmt: skip
