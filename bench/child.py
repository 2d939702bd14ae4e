"""One measurement in a fresh interpreter, printed as a number on stdout (run by bench/run.py).

child.py import MODULE       seconds to import MODULE ("boto3-s3": import boto3 + boto3.client("s3"))
child.py rss thumbnail FILE  peak RSS (VmHWM, Linux) growth in KiB, after imports and reading FILE,
                             of the processor's inspect() (checks and thumbnail) of the JPEG FILE
child.py rss decode FILE     the same for Pillow's full decode of FILE
child.py trigger FILE MIME   the processor's inspect() of FILE (declared MIME) as a cold Lambda's first
                             event runs it, after importing the handler: "wall_s cpu_s growth_kib
                             peak_kib" (CPU of every thread; peak: the process's whole VmHWM)
"""

import sys
import time


def import_seconds(module: str) -> float:
    start = time.perf_counter()
    if module == "boto3-s3":
        import boto3

        boto3.client("s3")
    else:
        __import__(module)
    return time.perf_counter() - start


def peak_rss_growth_kib(case: str, path: str) -> int:
    import io

    from PIL import Image

    from upload_processor import inspection

    data = open(path, "rb").read()  # noqa: SIM115 - read once, before the baseline
    before = peak_rss_kib()
    if case == "thumbnail":
        inspection.inspect(
            io.BytesIO(data), size=len(data), declared_mime="image/jpeg", declared_size=len(data)
        )
    else:
        Image.open(io.BytesIO(data)).load()
    return peak_rss_kib() - before


def trigger(path: str, mime: str) -> str:
    import io

    import upload_processor.handler  # noqa: F401 - what a cold start has loaded before its first event
    from upload_processor import inspection

    data = open(path, "rb").read()  # noqa: SIM115 - read once, before the baseline
    before = peak_rss_kib()
    wall, cpu = time.perf_counter(), time.process_time()
    inspection.inspect(io.BytesIO(data), size=len(data), declared_mime=mime, declared_size=len(data))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    # The object's bytes are held twice in Lambda too (the stream's buffer), once here before the baseline.
    return f"{wall} {cpu} {peak_rss_kib() - before} {peak_rss_kib()}"


def peak_rss_kib() -> int:
    """VmHWM, this process's RSS high-water mark. Not getrusage's ru_maxrss: a child inherits the
    parent's value at fork, and bench/run.py has just held a 24 MP image in memory."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


if __name__ == "__main__":
    if sys.argv[1] == "import":
        print(import_seconds(sys.argv[2]))
    elif sys.argv[1] == "trigger":
        print(trigger(sys.argv[2], sys.argv[3]))
    else:
        print(peak_rss_growth_kib(sys.argv[2], sys.argv[3]))
