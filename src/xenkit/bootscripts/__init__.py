"""U-Boot boot scripts: module layout, generation, ImageBuilder configs, uImages."""
