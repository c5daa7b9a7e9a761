"""A valid processor for the broken pipelines: copies its first input to its outputs."""

import shutil

from dagmill import processor

inputs, outputs = processor.fetch_datanodes_information()
for out in outputs:
    if inputs:
        shutil.copyfile(inputs[0], out)
    else:
        with open(out, "w") as f:
            f.write("made\n")
