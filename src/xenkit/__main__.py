from xenkit.cli import main

raise SystemExit(main())
