"""The `transferkit` command line: parse, call the library, print, exit.

Exit codes: 0 on success, 2 for a mistake in the input (with a one-line
message saying what to do), 1 for anything unexpected.
"""

import argparse
import os
import sys

import transferkit

USAGE_ERROR = 2


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return USAGE_ERROR
    # TensorFlow's C++ start-up chatter is noise on a command line.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from transferkit.errors import TransferkitError

    try:
        return args.run(args) or 0
    except TransferkitError as e:
        if args.debug:
            raise
        print(f"transferkit: error: {e}", file=sys.stderr)
        return USAGE_ERROR


def _parser():
    parser = argparse.ArgumentParser(
        prog="transferkit",
        description="Fine-tune pretrained Keras 3 models with the regularization done right.",
    )
    parser.add_argument("--version", action="version", version=f"transferkit {transferkit.__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    parser.set_defaults(command=None)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="seed 003's transfer experiment on scikit-learn's digits (about a minute)",
        description="Train model A on 8 digit classes, then task B (the other two digits, "
        "200 training images) from scratch and on A's layers; print both test accuracies "
        "and write a run folder with models, histories and curves. With --regularization: "
        "the regularization pitfall and its fix instead.",
    )
    demo.add_argument("--out", default="transferkit-demo",
                      help="run folder to write (default ./transferkit-demo; a previous demo "
                      "run there is replaced)")
    demo.add_argument("--classes", default="5,9", metavar="A,B",
                      help="task B's two digits (default 5,9)")
    demo.add_argument("--train-size", type=int, default=200, help="task B's training images (default 200)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
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
    reg.add_argument("-o", "--output", required=True, help="output .keras file (written atomically)")
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

    bb = commands.add_parser(
        "backbones",
        help="list the pretrained backbones and whether their weights are here",
        description="List the backbone catalogue: parameters, default input size, and "
        "whether the ImageNet weights can be loaded now without internet.",
    )
    bb.add_argument("names", nargs="*", metavar="NAME", help="only these backbones (default: all)")
    bb.set_defaults(command="backbones", run=_backbones)
    return parser


def _demo(args):
    if args.regularization:
        from transferkit.demo import regularization_demo

        _check_positive("--input-size", args.input_size, minimum=32)
        regularization_demo(input_size=args.input_size)
        return
    from transferkit.transfer_demo import transfer_demo

    classes = _int_list("--classes", args.classes)
    transfer_demo(args.out, classes=classes, train_size=args.train_size, seed=args.seed,
                  overwrite=args.overwrite or _is_demo_run(args.out))


def _is_demo_run(path):
    # A folder a previous `transferkit demo` wrote may be replaced without --overwrite.
    import json

    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
            return json.load(f).get("command") == "demo"
    except (OSError, ValueError, AttributeError):
        return False


def _int_list(flag, text):
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        _fail(f"{flag} takes comma-separated integers like 5,9; got {text!r}.")


def _regularize(args):
    from transferkit.saving import load_model, save_model

    if os.path.abspath(args.model) == os.path.abspath(args.output):
        _fail(f"Output {args.output} is the input file; choose another name.")
    if not args.output.endswith(".keras"):
        _fail(f"Output {args.output} must end in .keras.")
    # Parse the specs before the (slow) model load, so a typo fails at once.
    penalties = {k: transferkit.get_penalty(getattr(args, k)) for k in ("kernel", "bias", "activity")}
    model = load_model(args.model, compile=False)
    report = transferkit.regularize(model, layers=args.layers, **penalties)
    report.verify(model)
    save_model(model, args.output)
    print(report.to_table(max_rows=args.max_rows or None))
    print(f"Verified against model.losses; wrote {args.output}")


def _audit(args):
    from transferkit.saving import load_model

    model = load_model(args.model, compile=False)
    report = transferkit.audit(model)
    if not report.entries:
        print(f"{args.model}: no weight or activity penalties.")
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
        (r.name, f"{r.parameters / 1e6:.1f}M", f"{r.input_size}x{r.input_size}",
         "here" if r.weights_available else "download")
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    print(f"Weights cache: {transferkit.keras_models_dir()}")


def _check_positive(flag, value, minimum=1):
    if value < minimum:
        _fail(f"{flag} must be at least {minimum}; got {value}.")


def _fail(message):
    from transferkit.errors import TransferkitError

    raise TransferkitError(message)


if __name__ == "__main__":
    sys.exit(main())
