"""The `transferkit` command line: parse, call the library, print, exit.

Exit codes: 0 on success, 2 for a mistake in the input or a place that cannot
be written (with a one-line message saying what to do), 130 after Ctrl-C, 143
after SIGTERM, 1 for anything unexpected.
"""

import argparse
import os
import shlex
import signal
import sys
import threading
import warnings

import transferkit
from transferkit._quiet import quiet_tensorflow
from transferkit.progress import quiet
from transferkit.training.config import (
    Cluster,
    LabelTable,
    TextColumns,
    add_arguments,
    from_arguments,
)

USAGE_ERROR = 2
INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C
TERMINATED = 143  # 128 + SIGTERM


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return USAGE_ERROR
    if not (args.verbose or args.debug):
        # TensorFlow's C++ start-up chatter is noise on a command line.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        quiet_tensorflow()
    from transferkit.errors import TransferkitError

    formatted = warnings.formatwarning
    if not args.debug:
        # Our warnings (skipped files) are messages for the user, not code locations.
        def format_warning(message, category, filename, lineno, line=None):
            return f"transferkit: warning: {message}\n"

        warnings.formatwarning = format_warning
    # SIGTERM (what `timeout`, Docker and Slurm send) unwinds like Ctrl-C, so
    # that a run folder being written is removed, not left half-done.
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if main_thread else None
    try:
        with quiet(args.quiet):
            return args.run(args) or 0
    except TransferkitError as e:
        if args.debug:
            raise
        print(f"transferkit: error: {e}", file=sys.stderr)
        if getattr(e, "process_lost", False):  # its engine would wait for the lost process
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(USAGE_ERROR)
        return USAGE_ERROR
    except KeyboardInterrupt as e:
        if args.debug:
            raise
        terminated = isinstance(e, Terminated)
        kept = getattr(e, "checkpoint", None)  # train's last complete epoch
        if kept:
            argv = list(sys.argv[1:] if argv is None else argv)
            command = shlex.join(["transferkit", *argv, *([] if "--resume" in argv
                                                          else ["--resume"])])
            print(f"transferkit: {'terminated' if terminated else 'interrupted'} at epoch "
                  f"{kept['completed'] + 1}/{kept['total']} (epochs 1-{kept['completed']} "
                  f"kept in {kept['folder']}); resume with: {command}", file=sys.stderr)
            return TERMINATED if terminated else INTERRUPTED
        features = getattr(e, "kept", None)  # train's features, computed before
        print(f"transferkit: {'terminated' if terminated else 'interrupted'}; "
              + (f"the features computed so far are kept in {features} for the next run on "
                 "this --out; nothing else was written." if features else
                 "nothing was written (an output being written was removed)."),
              file=sys.stderr)
        return TERMINATED if terminated else INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`transferkit predict ... | head -1`): no more
        # output, and no second error when Python flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print("transferkit: error: the output was closed before everything was written "
              "(broken pipe).", file=sys.stderr)
        return USAGE_ERROR
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
        warnings.formatwarning = formatted


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that clean-up code runs."""


def _terminated(signum, frame):
    raise Terminated()


def _parser():
    parser = argparse.ArgumentParser(
        prog="transferkit",
        description="Fine-tune pretrained Keras 3 models with the regularization done right.",
    )
    parser.add_argument("--version", action="version", version=f"transferkit {transferkit.__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's start-up log lines (hidden by default)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars or per-epoch lines (the results still print)")
    parser.set_defaults(command=None)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="seed 003's transfer experiment on scikit-learn's digits (about 80 s on 2 cores)",
        description="Train model A on 8 digit classes, then task B (the other two digits, "
        "20, 50 and 200 training images) from scratch and on A's layers, over 3 seeds; print "
        "a table of mean +- std test accuracies and write a run folder with models, "
        "histories and curves. With --regularization: the regularization pitfall and its "
        "fix instead.",
    )
    demo.add_argument("--out", default="transferkit-demo",
                      help="run folder to write (default ./transferkit-demo; a previous demo "
                      "run there, or an empty folder, is replaced; anything else is refused)")
    demo.add_argument("--classes", default="5,9", metavar="A,B",
                      help="task B's two digits (default 5,9)")
    demo.add_argument("--sizes", default="20,50,200", metavar="N,N,...",
                      help="task B's training-set sizes (default 20,50,200)")
    demo.add_argument("--train-size", type=int, default=None,
                      help="one training-set size instead of --sizes")
    demo.add_argument("--seeds", type=int, default=3,
                      help="seeds per size, from --seed on, 1 to 20 (default 3)")
    demo.add_argument("--seed", type=int, default=0, help="first random seed (default 0)")
    demo.add_argument("--overwrite", action="store_true",
                      help="accepted for symmetry with train: the demo always replaces its own "
                      "previous run")
    demo.add_argument("--regularization", action="store_true",
                      help="show the regularization pitfall on MobileNetV2 instead")
    demo.add_argument("--input-size", type=int, default=96,
                      help="with --regularization: image side in pixels (default 96)")
    demo.set_defaults(command="demo", run=_demo)

    reg = commands.add_parser(
        "regularize",
        help="add L1/L2 penalties to a saved model, keeping its weights",
        description="Add kernel, bias and activity penalties to a .keras model in place "
        "(every weight kept bit for bit), print the audit, and save the result.",
    )
    reg.add_argument("model", help="input .keras file")
    reg.add_argument("-o", "--output", required=True,
                     help="output .keras file (written atomically; never replaces a file "
                     "without --overwrite)")
    reg.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    for kind in ("kernel", "bias", "activity"):
        reg.add_argument(f"--{kind}", metavar="SPEC", help=f"{kind} penalty: l2:1e-4, l1:1e-5 or l1_l2:1e-5,1e-4")
    reg.add_argument("--layers", metavar="REGEX", help="only layers whose qualified name matches REGEX")
    reg.add_argument("--max-rows", type=int, default=40, help="audit rows to print (default 40; 0 for all)")
    reg.set_defaults(command="regularize", run=_regularize)

    aud = commands.add_parser(
        "audit",
        help="list the penalties a saved model carries and check them against its loss",
        description="List every weight and activity penalty in a .keras model and verify "
        "that the active ones are in model.losses.",
    )
    aud.add_argument("model", help=".keras file")
    aud.add_argument("--max-rows", type=int, default=40, help="rows to print (default 40; 0 for all)")
    aud.set_defaults(command="audit", run=_audit)

    tr = commands.add_parser(
        "train",
        help="fine-tune a backbone on an image folder (one subfolder per class) or a "
        "labelled text file",
        description="Train the head on a frozen backbone, then fine-tune it with a lower "
        "learning rate; keep the best epoch. Writes model.keras, history.json, "
        "metrics.json, config.json and curves.png to --out (complete or not at all).",
    )
    tr.add_argument("data_dir", metavar="DATA",
                    help="training images, one subfolder per class; or, for a text backbone "
                    "(minilm_l6), a labelled CSV, TSV or JSONL file (.gz too)")
    tr.add_argument("--out", required=True, help="run folder to create")
    where = tr.add_mutually_exclusive_group()
    where.add_argument("--val", metavar="VAL",
                       help="validation images, same subfolders (or a text file, same classes)")
    where.add_argument("--val-split", type=float, default=0.2,
                       help="share of DATA_DIR held out for validation (default 0.2)")
    _add_recipe_arguments(tr)
    _add_table_arguments(tr)
    tr.add_argument("--no-report", dest="report", action="store_false",
                    help="do not write report.html / report.json")
    tr.add_argument("--overwrite", action="store_true",
                    help="replace --out if it is a previous train run (nothing else is replaced)")
    tr.add_argument("--resume", action="store_true",
                    help="continue an interrupted run from the checkpoint in OUT.partial/ "
                    "(kept after every epoch; same options and data required)")
    tr.set_defaults(command="train", run=_train)

    cv = commands.add_parser(
        "cv",
        help="k-fold cross-validation of the train recipe on an image folder or a text file",
        description="Run the train recipe on each of --folds stratified, seeded folds of "
        "DATA (each example validated once) and print every fold's validation figures with "
        "their mean and standard deviation. Frozen features are computed once for all folds.",
    )
    cv.add_argument("data_dir", metavar="DATA", help="images, one subfolder per class; or, "
                    "for a text backbone, a labelled text file")
    cv.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    cv.add_argument("--out", help="optional folder for metrics.json, history.json, config.json, "
                    "curves.png (complete or not at all)")
    _add_recipe_arguments(cv)
    _add_table_arguments(cv, exclude=("val_labels",))
    cv.add_argument("--no-report", dest="report", action="store_false",
                    help="do not write report.html / report.json into --out")
    cv.add_argument("--overwrite", action="store_true",
                    help="replace --out if it is a previous cv run (nothing else is replaced)")
    cv.set_defaults(command="cv", run=_cv)

    lf = commands.add_parser(
        "lr-find",
        help="find a learning rate: loss vs exponentially rising rate, plotted",
        description="Build the model train would (same options), freeze it per --unfreeze, "
        "train it for up to --steps batches with the learning rate rising exponentially from "
        "--start to --end, plot the loss against the rate and print a suggested rate. The "
        "model's weights are restored afterwards; nothing else is written.",
    )
    lf.add_argument("data_dir", metavar="DATA", help="images, one subfolder per class; or, for "
                    "a text backbone, a labelled text file")
    lf.add_argument("--plot", default="lr_find.png", help="the plot to write (default lr_find.png)")
    lf.add_argument("--overwrite", action="store_true", help="replace an existing --plot file")
    lf.add_argument("--start", type=float, default=1e-7, help="first rate (default 1e-7)")
    lf.add_argument("--end", type=float, default=10.0, help="last rate (default 10)")
    lf.add_argument("--steps", type=int, default=200, help="most batches (default 200)")
    _add_recipe_arguments(lf)
    lf.set_defaults(command="lr-find", run=_lr_find, unfreeze="none")

    dg = commands.add_parser(
        "diagnose",
        help="over- or under-fitting? read a run's training curves and say what to try next",
        description="Read a train run's history.json (each fold's, for a cv run) and print "
        "the best epoch, where over-fitting started (validation loss worse than its best for "
        "--patience epochs in a row while the training loss kept falling), the generalization "
        "gap, a verdict (over-fitting, under-fitting, good fit, diverged or inconclusive), the "
        "figures behind it, and what to try next.",
    )
    dg.add_argument("run_dir", help="a train or cv run folder")
    dg.add_argument("--patience", type=int, default=3,
                    help="epochs of rising validation loss that confirm over-fitting (default 3)")
    dg.add_argument("--min-delta", type=float, default=0.0,
                    help="a rise above the best smaller than this does not count (default 0)")
    dg.add_argument("--monitor", default="val_loss", metavar="KEY",
                    help="the validation figure to read, a key of history.json: val_loss "
                    "(default), val_accuracy, val_macro_f1 (when the run monitored it), ...")
    dg.add_argument("--json", action="store_true", help="print the diagnosis as JSON")
    dg.set_defaults(command="diagnose", run=_diagnose)

    cmp = commands.add_parser(
        "compare",
        help="train variants of one model (original, smaller, bigger, l2, dropout) on the "
        "same data and compare their curves",
        description="Seed 004's experiment on an image folder: train each variant (presets, "
        "or the [variants.NAME] tables of a TOML file) on the same images, split and seed; "
        "print best and last validation loss and accuracy, best epoch, over-fitting onset and "
        "verdict per variant. With --out, also write comparison.png, metrics.json, "
        "history.json and config.json (complete or not at all). Presets: original = the base "
        "options; smaller = --unfreeze blocks:1; bigger = --unfreeze all with BatchNorm "
        "training; l2 = --kernel l2:1e-4; dropout = --dropout 0.5.",
    )
    cmp.add_argument("data_dir", metavar="DATA",
                     help="training images, one subfolder per class; or, for a text backbone, "
                     "a labelled text file")
    cmp.add_argument("--variants", metavar="NAME,...",
                     help="presets to compare (default all: original,smaller,bigger,l2,dropout); "
                     "with --config, which of the file's variants to run")
    cmp.add_argument("--config", metavar="TOML",
                     help="variants file: [base] options shared by all, [variants.NAME] tables "
                     "with train's option names (learning_rate, kernel, dropout, unfreeze, ...)")
    cmp.add_argument("--out", help="optional folder to write (complete or not at all)")
    cmp_where = cmp.add_mutually_exclusive_group()
    cmp_where.add_argument("--val", metavar="VAL_DIR", help="validation images, same subfolders")
    cmp_where.add_argument("--val-split", type=float, default=0.2,
                           help="share of DATA_DIR held out for validation (default 0.2)")
    cmp_base = cmp.add_argument_group(
        "model and training options",
        "train's options, shared by every variant; given here, they override the TOML [base] "
        "(defaults: train's). --seed seeds the split and every variant (default 0).")
    add_arguments(cmp_base, defaults=False)
    cmp.add_argument("--cache-dir", metavar="DIR", help="feature cache shared between runs")
    cmp.add_argument("--strict", action="store_true",
                     help="stop at an unreadable image instead of skipping it")
    _add_column_arguments(cmp)
    _add_table_arguments(cmp)
    _add_cluster_arguments(cmp)
    cmp.add_argument("--no-report", dest="report", action="store_false",
                     help="do not write report.html / report.json into --out")
    cmp.add_argument("--save-models", action="store_true",
                     help="also save each variant's model to OUT/variants/NAME/model.keras")
    cmp.add_argument("--overwrite", action="store_true",
                     help="replace --out if it is a previous compare run (nothing else is "
                     "replaced)")
    cmp.set_defaults(command="compare", run=_compare)

    rp = commands.add_parser(
        "report",
        help="write a self-contained HTML report of a run (metrics, diagnosis, curves, mistakes)",
        description="Write report.html (one file, readable offline: images embedded) and "
        "report.json into a train or cv run folder: the metrics, the diagnosis of the "
        "training curves, the curves, each fold's figures, the configuration and, for a train "
        "run evaluated on --data (default: its --val folder), the confusion matrix and the "
        "worst-classified images. Prints the path written.",
    )
    rp.add_argument("run_dir", help="a train or cv run folder")
    rp.add_argument("--data", metavar="DATA_DIR",
                    help="labelled images to evaluate a train run on (default: the run's "
                    "--val folder, if it exists)")
    rp.add_argument("--worst", type=int, default=12, metavar="N",
                    help="worst-classified images to show (default 12; 0 for none)")
    rp.set_defaults(command="report", run=_report)

    pr = commands.add_parser(
        "predict",
        help="classify image files (or texts) with a trained run",
        description="Print the predicted class and its probability for each image (or text, "
        "for a run of a text backbone). With "
        "--mc-samples T: Monte Carlo dropout, the mean of T passes with dropout on (all else "
        "in inference mode), with the spread of the probability and the predictive entropy.",
    )
    pr.add_argument("run_dir", help="a train run folder")
    pr.add_argument("images", nargs="+", metavar="INPUT",
                    help="image files or folders; for a text run, text files: .txt (one text a "
                    "line), or CSV, TSV, JSONL (their text column)")
    output = pr.add_mutually_exclusive_group()
    output.add_argument("--csv", action="store_true",
                        help="CSV output with every class's probability")
    output.add_argument("--json", action="store_true",
                        help="JSON output: a list of rows with every class's probability")
    pr.add_argument("--mc-samples", type=int, metavar="T",
                    help="Monte Carlo dropout with T passes (e.g. 30): print each probability "
                    "± its standard deviation and the entropy in nats")
    pr.add_argument("--seed", type=int, default=0,
                    help="random seed of the --mc-samples dropout masks (default 0)")
    _add_tta_argument(pr)
    _add_column_arguments(pr, defaults=False)
    pr.set_defaults(command="predict", run=_predict)

    ev = commands.add_parser(
        "evaluate",
        help="accuracy, per-class precision/recall/F1 and confusion matrix on labelled data",
        description="Evaluate a trained run on a folder with one subfolder per class, or, "
        "for a text run, on a labelled text file.",
    )
    ev.add_argument("run_dir", help="a train run folder")
    ev.add_argument("data_dir", metavar="DATA",
                    help="labelled images, one subfolder per class; or a labelled text file")
    ev.add_argument("--json", action="store_true", help="print the figures as JSON")
    _add_tta_argument(ev)
    _add_table_arguments(ev, exclude=("val_labels",))
    _add_column_arguments(ev, defaults=False)
    ev.set_defaults(command="evaluate", run=_evaluate)

    ex = commands.add_parser(
        "export",
        help="export a run's model for serving (SavedModel, LiteRT, ONNX) and verify it",
        description="Write a run's model as a TensorFlow SavedModel, a LiteRT (.tflite) or an "
        "ONNX file, taking what model.keras takes (RGB pixels 0-255, or token ids) and giving "
        "class probabilities; then load it in its own runtime, run it on the run's validation "
        "examples (random inputs if they are gone) and compare with the Keras model. A "
        "mismatch is an error and nothing is written. --quantize float16|int8 works with "
        "--format litert only (int8 calibrates on 100 of the run's training images).",
    )
    ex.add_argument("run_dir", metavar="RUN", help="a train run folder")
    ex.add_argument("--format", default="saved_model", metavar="FORMAT",
                    help="saved_model (default), litert or onnx (onnx needs: pip install "
                    "\"transferkit[export]\")")
    ex.add_argument("--quantize", metavar="float16|int8",
                    help="litert only: float16 weights (half the size) or int8 weights and "
                    "activations (a quarter); checked by class agreement and accuracy")
    ex.add_argument("--out", help="export folder to write (default RUN/export/FORMAT, e.g. "
                    "RUN/export/litert-int8); it holds the artifact and config.json")
    ex.add_argument("--overwrite", action="store_true",
                    help="replace --out if it is a previous export (nothing else is replaced)")
    ex.add_argument("--samples", type=int, default=1000, metavar="N",
                    help="verify on at most N validation examples (default 1000)")
    ex.add_argument("--json", action="store_true", help="print the result as JSON")
    ex.set_defaults(command="export", run=_export)

    bb = commands.add_parser(
        "backbones",
        help="list the pretrained backbones and whether their weights are here",
        description="List the backbone catalogue: parameters, default input size, and "
        "whether the ImageNet weights can be loaded now without internet.",
    )
    bb.add_argument("names", nargs="*", metavar="NAME", help="only these backbones (default: all)")
    bb.set_defaults(command="backbones", run=_backbones)
    for command in commands.choices.values():  # also after the command's name
        command.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS,
                             help="no progress bars or per-epoch lines")
    return parser


def _add_recipe_arguments(parser):
    """The options that say how a model is built and trained, from `TrainingConfig`."""
    add_arguments(parser.add_argument_group(
        "model and training options", "see transferkit.training.config.TrainingConfig"))
    parser.add_argument("--cache-dir", metavar="DIR",
                        help="feature cache shared between runs (default: features/ in the "
                        "run folder)")
    parser.add_argument("--strict", action="store_true",
                        help="stop at an unreadable image instead of skipping it")
    _add_column_arguments(parser)
    _add_cluster_arguments(parser)


def _add_cluster_arguments(parser):
    """Several machines training together, from `Cluster`."""
    add_arguments(parser.add_argument_group(
        "several machines", "see transferkit.training.config.Cluster and README: Training on "
        "several devices and machines"), fields_of=Cluster)


def _join_cluster(args):
    """Joins the other processes when the flags of `Cluster` were given."""
    given = from_arguments(args, fields_of=Cluster)
    if given:
        Cluster(**given).join()


def _add_table_arguments(parser, exclude=()):
    """Labels from a table instead of class subfolders, from `LabelTable`."""
    add_arguments(parser.add_argument_group(
        "label tables (image folders)", "see transferkit.training.config.LabelTable; "
        "--skip-bad-rows applies to them too"), fields_of=LabelTable, exclude=exclude)


def _table(args, exclude=()):
    """The `LabelTable` of the flags given, or `None`."""
    given = from_arguments(args, fields_of=LabelTable, exclude=exclude)
    return LabelTable(**given) if given else None


def _add_tta_argument(parser):
    parser.add_argument("--tta", type=int, metavar="N",
                        help="test-time augmentation (images): the mean over N views, 1-8 "
                        "(2: the image and its mirror image; then centre and corner crops)")


def _add_column_arguments(parser, defaults=True):
    """Where the texts and labels are in text files, from `TextColumns`.

    Without `defaults` (predict, evaluate) the run's training columns apply.
    """
    add_arguments(parser.add_argument_group(
        "text files (text backbones)", "see transferkit.training.config.TextColumns"
        + ("" if defaults else "; default: the columns the run was trained on")),
        fields_of=TextColumns, defaults=defaults)


def _columns(args, run=None):
    """The `TextColumns` of the flags given, over `run`'s (`None` if neither)."""
    given = from_arguments(args, fields_of=TextColumns)
    if run is None:
        return TextColumns(**given)
    return TextColumns(**{**(run.columns or {}), **given}) if given else None


def _recipe_options(args):
    """The model and training options given on the command line, as `train`'s keywords."""
    given = from_arguments(args)
    return given.pop("backbone"), given


def _demo(args):
    if args.regularization:
        from transferkit.workflows.regularization_demo import regularization_demo

        _check_positive("--input-size", args.input_size, minimum=32)
        regularization_demo(input_size=args.input_size)
        return
    from transferkit.workflows.transfer_demo import transfer_demo

    classes = _int_list("--classes", args.classes)
    sizes = _int_list("--sizes", args.sizes)
    if args.train_size is not None:
        sizes = [args.train_size]
    # The README's first command must run twice: the demo replaces its own
    # previous run (overwrite replaces nothing else).
    transfer_demo(args.out, classes=classes, sizes=sizes, seeds=args.seeds, seed=args.seed,
                  overwrite=True)


def _int_list(flag, text):
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        _fail(f"{flag} takes comma-separated integers like 5,9; got {text!r}.")


def _regularize(args):
    from transferkit.outputs import check_output_file
    from transferkit.saving import load_model, save_model

    check_output_file(args.output, inputs=[args.model], overwrite=args.overwrite,
                      suffix=".keras")
    # Parse the specs before the (slow) model load, so a typo fails at once.
    penalties = {k: transferkit.get_penalty(getattr(args, k)) for k in ("kernel", "bias", "activity")}
    model = load_model(args.model, compile=False)
    report = transferkit.regularize(model, layers=args.layers, **penalties)
    report.verify(model)
    save_model(model, args.output, overwrite=args.overwrite)
    print(report.to_table(max_rows=args.max_rows or None))
    print(f"Verified against model.losses; wrote {args.output}")


def _audit(args):
    from transferkit.saving import load_model

    model = load_model(args.model, compile=False)
    report = transferkit.audit(model)
    if not report.entries and not report.constraints:
        print(f"{args.model}: no weight or activity penalties, no constraints.")
        return
    report.verify(model)
    print(report.to_table(max_rows=args.max_rows or None))
    print("Verified: every active penalty is in model.losses.")


def _backbones(args):
    rows = transferkit.list_backbones()
    if args.names:
        # Resolved through the catalogue, so a typo gets its suggestion.
        wanted = {transferkit.get_backbone_config(n).name for n in args.names}
        rows = [r for r in rows if r.name in wanted]
    header = ("backbone", "parameters", "input", "weights")
    table = [header] + [
        (r.name, f"{r.parameters / 1e6:.1f}M",
         f"{r.input_size} tokens" if getattr(r, "modality", "image") == "text"
         else f"{r.input_size}x{r.input_size}",
         "here" if r.weights_available else "download")
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    print(f"Weights cache: {transferkit.keras_models_dir()}")


def _train(args):
    _join_cluster(args)
    from transferkit.workflows.train import train

    if not 0 < args.val_split < 1:
        _fail(f"--val-split must be between 0 and 1, like 0.2; got {args.val_split}.")
    backbone, given = _recipe_options(args)
    train(args.data_dir, backbone, args.out, val=args.val, val_split=args.val_split,
          cache_dir=args.cache_dir, report=args.report, strict=args.strict,
          overwrite=args.overwrite, resume=args.resume, columns=_columns(args),
          table=_table(args), **given)


def _lr_find(args):
    _join_cluster(args)
    _check_paths(folders=[args.data_dir], backbone=args.backbone)
    from transferkit.workflows.lr_find import lr_find

    backbone, given = _recipe_options(args)
    finder = lr_find(args.data_dir, backbone, args.plot, start=args.start, end=args.end,
                     steps=args.steps, strict=args.strict, overwrite=args.overwrite,
                     columns=_columns(args), **given)
    print(f"Suggested learning rate: {finder.suggestion_:.2g} (the lowest smoothed loss at "
          f"{finder.minimum_rate_:.2g}, divided by 10), over {len(finder.losses_)} batches"
          + ("; stopped when the loss diverged" if finder.stopped_early_ else "")
          + f". Plot: {args.plot}")


def _cv(args):
    _join_cluster(args)
    from transferkit.workflows.crossval import cross_validate

    _check_positive("--folds", args.folds, minimum=2)
    backbone, given = _recipe_options(args)
    cross_validate(args.data_dir, backbone, args.out, folds=args.folds,
                   cache_dir=args.cache_dir, report=args.report, strict=args.strict,
                   overwrite=args.overwrite, columns=_columns(args),
                   table=_table(args, exclude=("val_labels",)), **given)


def _diagnose(args):
    import json

    from transferkit.evaluation.diagnosis import diagnose_run

    _check_positive("--patience", args.patience)
    if not 0 <= args.min_delta < float("inf"):
        _fail(f"--min-delta must be a number >= 0, like 0.01; got {args.min_delta}.")
    result = diagnose_run(args.run_dir, patience=args.patience, min_delta=args.min_delta,
                          monitor=args.monitor)
    folds = result if isinstance(result, list) else None
    if args.json:
        print(json.dumps([d.to_dict() for d in folds] if folds is not None else result.to_dict(),
                         indent=2))
        return
    if folds is None:
        print(result)
        return
    for k, diagnosis in enumerate(folds, 1):
        print(("\n" if k > 1 else "") + f"Fold {k}/{len(folds)}")
        print(diagnosis)


def _compare(args):
    _join_cluster(args)
    _check_paths(folders=[args.data_dir, args.val], backbone=args.backbone)
    from transferkit.workflows.compare import compare

    # Only the options given here: the others come from the TOML [base] or train's defaults.
    backbone, given = _recipe_options(args)
    seed = given.pop("seed", 0)
    if args.val is None and not 0 < args.val_split < 1:
        _fail(f"--val-split must be between 0 and 1, like 0.2; got {args.val_split}.")
    compare(args.data_dir, backbone, args.out, variants=args.variants, config=args.config,
            val=args.val, val_split=args.val_split, seed=seed, cache_dir=args.cache_dir,
            strict=args.strict, overwrite=args.overwrite, save_models=args.save_models,
            report=args.report, columns=_columns(args), table=_table(args), **given)


def _report(args):
    from transferkit.evaluation.report import write_report

    _check_positive("--worst", args.worst, minimum=0)
    print(write_report(args.run_dir, data_dir=args.data, worst=args.worst))


def _predict(args):
    import csv

    _check_paths(run=args.run_dir, files=args.images)
    from transferkit.evaluation.inference import load_run, predict

    from transferkit.evaluation.tta import check_views

    check_views(args.tta)  # before the model loads
    mc = args.mc_samples is not None
    if mc:
        _check_positive("--mc-samples", args.mc_samples, minimum=2)
    run = load_run(args.run_dir)
    rows = predict(run, args.images, mc_samples=args.mc_samples, seed=args.seed,
                   columns=_columns(args, run), tta=args.tta)
    one, every = ("score", "scores") if run.outputs == "scores" else (
        "probability", "probabilities")
    if args.json:
        import json

        print(json.dumps(rows, indent=1, ensure_ascii=False))
        return
    if run.task != "classes":
        _print_targets(run, rows, args.csv)
        return
    if run.text:  # a text's place: its file and line
        for row in rows:
            row["path"] = f"{row['path']}:{row['line']}"
    if args.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(["path", "class", one] + [f"{one[0]}_{c}" for c in run.class_names]
                        + (["std", "entropy"] + [f"std_{c}" for c in run.class_names]
                           if mc else []) + (["text"] if run.text else []))
        for row in rows:
            writer.writerow([row["path"], row["class"], f"{row[one]:.6f}"]
                            + [f"{p:.6f}" for p in row[every]]
                            + ([f"{row['std']:.6f}", f"{row['entropy']:.6f}"]
                               + [f"{s:.6f}" for s in row["stds"]] if mc else [])
                            + ([row["text"]] if run.text else []))
        return
    width = max(len(row["path"]) for row in rows)
    for row in rows:
        value = f"{row[one]:.4f}" + (" (score)" if one == "score" else "")
        if mc:
            value += f" ± {row['std']:.4f}  entropy {row['entropy']:.3f}"
        if run.text:  # the text's start, on one line
            value += "  " + repr(row["text"][:60] + ("..." if len(row["text"]) > 60 else ""))
        print(f"{row['path'].ljust(width)}  {row['class']}  {value}")


def _print_targets(run, rows, as_csv):
    """`predict`'s rows of a multi-label (labels at their thresholds) or regression run."""
    import csv

    name = run.class_names[0]
    if as_csv:
        writer = csv.writer(sys.stdout)
        if run.task == "regression":
            writer.writerow(["path", name])
            writer.writerows([row["path"], f"{row['value']:.6g}"] for row in rows)
        else:
            writer.writerow(["path", "labels"] + [f"p_{n}" for n in run.class_names])
            writer.writerows([row["path"], ";".join(row["labels"])]
                             + [f"{p:.6f}" for p in row["probabilities"]] for row in rows)
        return
    width = max(len(row["path"]) for row in rows)
    for row in rows:
        if run.task == "regression":
            shown = f"{name} {row['value']:.4g}"
        else:
            p = dict(zip(run.class_names, row["probabilities"]))
            shown = ", ".join(f"{n} {p[n]:.3f}" for n in row["labels"]) or "(no label)"
        print(f"{row['path'].ljust(width)}  {shown}")


def _evaluate(args):
    import json

    _check_paths(run=args.run_dir, folders=[args.data_dir])
    from transferkit.evaluation.inference import evaluate, load_run
    from transferkit.evaluation.tta import check_views

    check_views(args.tta)  # before the model loads
    run = load_run(args.run_dir)
    table = _table(args, exclude=("val_labels",))
    result = evaluate(run, args.data_dir, columns=_columns(args, run), tta=args.tta,
                      table=table, skip_bad_rows=bool(getattr(args, "skip_bad_rows", False)))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    if run.task == "regression":
        r2 = "n/a" if result["r2"] is None else f"{result['r2']:.4f}"
        print(f"{run.class_names[0]} on {result['images']} images: MAE {result['mae']:.4g}, "
              f"RMSE {result['rmse']:.4g}, R\u00b2 {r2}")
        return
    if run.task == "multilabel":
        print(f"{result['images']} images: micro-F1 {result['micro_f1']:.4f}, macro-F1 "
              f"{result['macro_f1']:.4f}, mAP {result['mean_average_precision']:.4f} at the "
              "run's thresholds")
        width = max(len(n) for n in run.class_names + ["label"])
        print(f"{'label'.ljust(width)}  threshold  precision  recall      f1      AP  support")
        for name in run.class_names:
            c = result["per_label"][name]
            print(f"{name.ljust(width)}  {c['threshold']:9.3f}  {c['precision']:9.4f}  "
                  f"{c['recall']:6.4f}  {c['f1']:6.4f}  {c['average_precision']:6.4f}  "
                  f"{c['support']:7d}")
        return
    names = result["class_names"]
    noun = "texts" if run.text else "images"
    print(f"accuracy {result['accuracy']:.4f} on {result[noun]} {noun}; balanced accuracy "
          f"{result['balanced_accuracy']:.4f}, macro-F1 {result['macro_f1']:.4f}"
          + (f", ROC-AUC {result['roc_auc']:.4f}, PR-AUC {result['pr_auc']:.4f}"
             if "roc_auc" in result else ""))
    width = max(len(n) for n in names + ["class"])
    print(f"{'class'.ljust(width)}  precision  recall      f1  support")
    for name in names:
        c = result["classes"][name]
        print(f"{name.ljust(width)}  {c['precision']:9.4f}  {c['recall']:6.4f}  {c['f1']:6.4f}  "
              f"{c['support']:7d}")
    print("confusion matrix (rows: true class, columns: predicted)")
    cell = max(width, max(len(str(v)) for row in result["confusion_matrix"] for v in row))
    print(" " * (width + 2) + "  ".join(n.rjust(cell) for n in names))
    for name, row in zip(names, result["confusion_matrix"]):
        print(name.ljust(width) + "  " + "  ".join(str(v).rjust(cell) for v in row))


def _export(args):
    from transferkit.workflows.export import export

    _check_positive("--samples", args.samples)
    result = export(args.run_dir, args.out, format=args.format, quantize=args.quantize,
                    overwrite=args.overwrite, samples=args.samples)
    if args.json:
        import json

        print(json.dumps(result.to_dict(), indent=2))
        return
    print("\n".join(result.lines()))


def _check_positive(flag, value, minimum=1):
    if value < minimum:
        _fail(f"{flag} must be at least {minimum}; got {value}.")


def _check_paths(run=None, folders=(), files=(), backbone=None):
    """The library's own path checks, made before a command imports Keras (seconds)."""
    from transferkit.data.images import check_image_folder
    from transferkit.data.text import check_text_file
    from transferkit.errors import TransferkitError
    from transferkit.runs import read_run_config

    text = False
    if run is not None:
        text = read_run_config(run).get("max_length") is not None
    elif backbone is not None:  # a catalogue name: an unknown one fails later, with its hint
        from transferkit.backbones.registry import get_backbone_config

        try:
            text = get_backbone_config(backbone).modality == "text"
        except TransferkitError:
            pass
    for folder in folders:
        if folder is not None:
            (check_text_file if text else check_image_folder)(folder)
    for file in files if text else ():  # texts to predict: unlabelled files too
        check_text_file(file, labelled=False)


def _fail(message):
    from transferkit.errors import TransferkitError

    raise TransferkitError(message)


if __name__ == "__main__":
    sys.exit(main())
