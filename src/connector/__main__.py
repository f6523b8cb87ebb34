import sys

from connector.app.main import main

sys.exit(main())
